"""Screenshots of every dashboard page for docs/dashboard.md, taken in headless Chromium.

``python -m benchmarks.dashboard_screenshots [--out docs/img] [--chromium PATH]``

It builds a small queue whose last hour looks like a working day (tasks finished minute by
minute, a few retried and failed through the real repositories, two workers, an hour of depth
samples), serves it with an API key set, signs in through the form and saves
``dashboard_<page>.png`` for each page.
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
from datetime import timedelta
from pathlib import Path

from sqlalchemy import text

from benchmarks.dashboard import fill, serving
from queue_core import migrate
from queue_core.clock import ManualClock, to_micros, utcnow
from queue_core.database import Database
from queue_core.repositories import (
    LeaseRepository,
    ScheduleRepository,
    TaskRepository,
    TypeRepository,
    WorkerRepository,
)
from queue_core.schemas import Rate
from queue_core.settings import QueueSettings, sqlite_url_for

KEY = "screenshot-key"
ROOT = Path(__file__).resolve().parents[1]


def build(db: Database) -> int:
    """Returns the id of a dead letter with a real history, for the detail page."""
    fill(db, 3000, span_seconds=3600)
    rng = random.Random(7)
    with db.write() as conn:  # a natural depth curve instead of the benchmark's flat one
        conn.execute(text("DELETE FROM queue_samples"))
        conn.execute(text("DELETE FROM workers"))
    now = utcnow()
    depth = 120
    for minute in range(60, 0, -1):
        depth = max(5, depth + rng.randint(-25, 30) + (40 if minute == 22 else 0))
        at = (now - timedelta(minutes=minute)).replace(second=0, microsecond=0)
        sqlite = db.engine.dialect.name == "sqlite"
        with db.write() as conn:
            conn.execute(
                text(
                    "INSERT INTO queue_samples (sampled_at_utc, queued, due, leased) "
                    "VALUES (:at, :q, :d, :l)"
                ),
                {"at": to_micros(at) if sqlite else at, "q": depth, "d": depth - 3, "l": 8},
            )
    clock = ManualClock(now - timedelta(minutes=3))
    workers = WorkerRepository(db)
    for name, types in (
        ("worker-a1", ["email.send", "report.daily"]),
        ("worker-b2", ["invoice.charge", "image.resize", "video.transcode"]),
    ):
        workers.register(name, task_types=types, concurrency=4, strategy="priority")
    tasks = TaskRepository(db, clock)
    leases = LeaseRepository(db, clock)
    task_id = tasks.enqueue(
        type="invoice.charge",
        payload={"invoice": "INV-2026-0042", "amount_cents": 129900, "currency": "EUR"},
        max_attempts=3,
    ).task.task_id
    for attempt in range(3):
        claimed = leases.claim("worker-a1", ["invoice.charge"])
        clock.advance(2)
        leases.fail(claimed[0].lease, "PaymentGatewayError: card declined (code 05)")
        clock.advance(2**attempt + 1)
        with db.write() as conn:  # let the back-off pass at once
            conn.execute(
                text(
                    "UPDATE task_queue SET run_after_utc = created_at_utc "
                    "WHERE id = :id AND status = 'queued'"
                ),
                {"id": task_id},
            )
    tasks.enqueue(type="email.send", payload={"to": "ops@example.com"})
    leases.claim("worker-a1", ["email.send"])
    schedules = ScheduleRepository(db, tasks=tasks)
    schedules.add(
        name="report.daily", type="report.daily", cron="0 6 * * *", timezone="Europe/Prague"
    )
    schedules.add(name="search.reindex", type="search.index", cron="*/15 * * * *")
    schedules.add(name="billing.monthly", type="billing.charge", cron="0 3 1 * *")
    schedules.pause("billing.monthly")
    types = TypeRepository(db)
    types.pause("video.transcode")
    types.set_limits("image.resize", max_running=4)
    types.set_limits("webhook.deliver", rate=Rate(count=50, per_seconds=60))
    return task_id


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        db = Database(sqlite_url_for(Path(tmp) / "shots.db"), QueueSettings(api_keys=KEY))
        migrate.upgrade(db)
        dead = build(db)
        with serving(db) as base, sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=args.chromium, args=["--no-sandbox"]
            )
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            page.goto(f"{base}/ui")
            page.screenshot(path=args.out / "dashboard_login.png")
            page.fill("input[name=key]", KEY)
            page.click("button[type=submit]")
            page.wait_for_url(f"{base}/ui")
            shots = [
                ("overview", "/ui"),
                ("tasks", "/ui/tasks"),
                ("task", f"/ui/tasks/{dead}"),
                ("dead", "/ui/dead"),
                ("workers", "/ui/workers"),
                ("schedules", "/ui/schedules"),
                ("types", "/ui/types"),
            ]
            for name, path in shots:
                page.goto(f"{base}{path}")
                page.screenshot(path=args.out / f"dashboard_{name}.png", full_page=False)
                print(f"saved {args.out / f'dashboard_{name}.png'}")
            browser.close()
        db.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
