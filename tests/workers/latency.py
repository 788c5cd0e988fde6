"""Measure enqueue-to-start latency: one task every 10 ms, one real worker process.

    python -m tests.workers.latency [--tasks 500] [--interval 0.01] [--database-url URL]

The producer (this process) notes ``time.time()`` just before ``TaskRepository.enqueue``;
the handler (``t.stamp`` in a ``prismq-queue worker`` subprocess) notes ``time.time()`` as
it starts. Latency = start - enqueue call, so it includes the enqueue's own commit, the
worker's wake-up, the claim transaction and the hand-over to a handler thread. Prints
p50/p90/p99/max in milliseconds. Without --database-url it uses a fresh SQLite file.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from queue_core import migrate
from queue_core.database import Database
from queue_core.repositories import TaskRepository
from queue_core.settings import sqlite_url_for
from tests.workers.handlers import RECORD_DIR_ENV, read_records

REPO_ROOT = Path(__file__).resolve().parents[2]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def measure(
    url: str, count: int, interval: float, records: Path
) -> tuple[list[float], list[float]]:
    """Latencies in ms from the enqueue call, and from the enqueue's return."""
    db = Database(url)
    migrate.upgrade(db)
    tasks = TaskRepository(db)
    env = dict(os.environ, **{RECORD_DIR_ENV: str(records)})
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    command = [sys.executable, "-m", "queue_core.cli", "worker"]
    command += [
        "--import",
        "tests.workers.handlers",
        "--database-url",
        url,
        "--log-level",
        "WARNING",
    ]
    worker = subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        env=env,
    )
    try:
        warm = tasks.enqueue(type="t.noop").task.task_id  # wait until the worker runs
        deadline = time.monotonic() + 60
        while tasks.get(warm).status.value != "completed":
            if time.monotonic() > deadline or worker.poll() is not None:
                raise RuntimeError("the worker did not start")
            time.sleep(0.05)
        sent: dict[int, float] = {}
        returned: dict[int, float] = {}
        next_at = time.monotonic()
        for _ in range(count):
            # Never catch up in a burst after a stall of this (loaded) process: a burst would
            # measure queueing behind it, not the wake-up.
            next_at = max(next_at, time.monotonic()) + interval
            before = time.time()
            task_id = tasks.enqueue(type="t.stamp").task.task_id
            sent[task_id] = before
            returned[task_id] = time.time()
            time.sleep(max(0.0, next_at - time.monotonic()))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            started = {r["task_id"]: r["at"] for r in read_records(records) if "at" in r}
            if set(sent) <= set(started):
                break
            time.sleep(0.1)
        return (
            [(started[task_id] - at) * 1000 for task_id, at in sent.items()],
            [(started[task_id] - at) * 1000 for task_id, at in returned.items()],
        )
    finally:
        worker.terminate()
        worker.wait(30)
        db.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--interval", type=float, default=0.01)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        url = args.database_url or sqlite_url_for(Path(scratch) / "latency.db")
        records = Path(scratch) / "records"
        records.mkdir()
        from_call, from_return = measure(url, args.tasks, args.interval, records)
    print(f"{len(from_call)} tasks, one every {args.interval * 1000:g} ms:")
    for label, latencies in (("enqueue call", from_call), ("enqueue commit", from_return)):
        print(
            f"  from the {label}: p50 {statistics.median(latencies):.2f} ms, "
            f"p90 {percentile(latencies, 0.9):.2f} ms, p99 {percentile(latencies, 0.99):.2f} ms, "
            f"max {max(latencies):.2f} ms"
        )


if __name__ == "__main__":
    main()
