"""How long each dashboard page takes with 10^5 and 10^6 tasks (docs/dashboard.md).

``python -m benchmarks.dashboard [--tasks N ...] [--reps R] [--database-url URL] [--json FILE]``

For each size it fills a fresh SQLite database (or the PostgreSQL database named by
``--database-url``, emptied first) with N tasks spread over the last 24 hours, in one
``INSERT … SELECT`` over a recursive sequence (10^6 rows take seconds), runs ``ANALYZE`` as
the hourly maintenance job would, then times every page over HTTP to a real uvicorn server on
loopback: R requests per page after one warm-up, median and worst reported. It also prints the
query plan of each dashboard query on SQLite, so a missing index shows up as a SCAN.

Mix per 100 tasks: 78 completed, 6 failed, 2 cancelled, 13 queued (1 of them delayed), 1
leased; 8 task types; 4 workers; one depth sample a minute for the last hour.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from sqlalchemy import text

from api import create_app
from queue_core import migrate
from queue_core.clock import to_micros, utcnow
from queue_core.database import Database
from queue_core.settings import QueueSettings, sqlite_url_for

TYPES = [
    "email.send",
    "report.daily",
    "image.resize",
    "demo.echo",
    "billing.charge",
    "search.index",
    "video.transcode",
    "webhook.deliver",
]
PAGES = [
    ("overview", "/ui"),
    ("tasks", "/ui/tasks"),
    ("tasks ?status=failed", "/ui/tasks?status=failed"),
    ("tasks ?type=", "/ui/tasks?type=video.transcode"),
    ("tasks ?status=&type=", "/ui/tasks?status=queued&type=image.resize"),
    ("tasks, a middle page", "/ui/tasks?before_id={middle}"),
    ("task detail", "/ui/tasks/{middle}"),
    ("dead letters", "/ui/dead"),
    ("workers", "/ui/workers"),
    ("(REST GET task, reference)", "/api/queue/tasks/{middle}"),
]
# The full counts are O(history) (no index holds every state since revision 0006): timed with
# 3 requests, not R, and they stand for what the overview's background recount costs.
SLOW_REFERENCE = [("(REST GET stats, reference)", "/api/queue/stats")]

# One statement per backend: the time columns are epoch microseconds on SQLite and timestamptz
# on PostgreSQL, so each has its own expressions for "created x microseconds ago".
_SQLITE_FILL = """
WITH RECURSIVE seq(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM seq WHERE x < :n),
rows AS (
  SELECT x,
         :now - (:n - x) * (:day / :n) AS created,
         CASE WHEN x % 100 < 78 THEN 'completed' WHEN x % 100 < 84 THEN 'failed'
              WHEN x % 100 < 86 THEN 'cancelled' WHEN x % 100 < 87 THEN 'leased'
              ELSE 'queued' END AS status
  FROM seq
)
INSERT INTO task_queue (type, priority, payload, compatibility, status, attempts,
    max_attempts, run_after_utc, lease_until_utc, processing_started_utc, finished_at_utc,
    locked_by, error_message, created_at_utc, updated_at_utc, lease_token)
SELECT :types_json ->> ('$[' || (x % 8) || ']'), 100, '{"n": ' || x || '}', '{}', status,
       CASE WHEN status = 'queued' THEN 0 ELSE 1 END, 5,
       CASE WHEN status = 'queued' AND x % 100 = 99 THEN :now + 3600000000 ELSE created END,
       CASE WHEN status = 'leased' THEN :now + 30000000 END,
       CASE WHEN status NOT IN ('queued', 'cancelled') THEN created + 1000000 END,
       CASE WHEN status IN ('completed', 'failed', 'cancelled') THEN created + 2000000 END,
       CASE WHEN status = 'leased' THEN 'worker-' || (x % 4) END,
       CASE WHEN status = 'failed' THEN 'ValueError: could not process item ' || x END,
       created, created, 1
FROM rows
"""

_PG_FILL = """
WITH rows AS (
  SELECT x,
         now() - ((:n - x) * (:day / :n)) * interval '1 second' AS created,
         CASE WHEN x % 100 < 78 THEN 'completed' WHEN x % 100 < 84 THEN 'failed'
              WHEN x % 100 < 86 THEN 'cancelled' WHEN x % 100 < 87 THEN 'leased'
              ELSE 'queued' END AS status
  FROM generate_series(1, :n) AS x
)
INSERT INTO task_queue (type, priority, payload, compatibility, status, attempts,
    max_attempts, run_after_utc, lease_until_utc, processing_started_utc, finished_at_utc,
    locked_by, error_message, created_at_utc, updated_at_utc, lease_token)
SELECT (:types_json ::jsonb) ->> (x % 8), 100, ('{"n": ' || x || '}')::json, '{}'::jsonb,
       status, CASE WHEN status = 'queued' THEN 0 ELSE 1 END, 5,
       CASE WHEN status = 'queued' AND x % 100 = 99 THEN now() + interval '1 hour'
            ELSE created END,
       CASE WHEN status = 'leased' THEN now() + interval '30 seconds' END,
       CASE WHEN status NOT IN ('queued', 'cancelled') THEN created + interval '1 second' END,
       CASE WHEN status IN ('completed', 'failed', 'cancelled')
            THEN created + interval '2 seconds' END,
       CASE WHEN status = 'leased' THEN 'worker-' || (x % 4) END,
       CASE WHEN status = 'failed' THEN 'ValueError: could not process item ' || x END,
       created, created, 1
FROM rows
"""

EXPLAINED = {
    "finished counts per state and type": "SELECT type, status, COUNT(*) FROM task_queue "
    "WHERE finished_at_utc IS NOT NULL AND status IN ('cancelled', 'completed', 'failed') "
    "GROUP BY status, type",
    "throughput, one minute": "SELECT COUNT(*) FROM task_queue "
    "WHERE finished_at_utc >= 1 AND finished_at_utc < 2",
    "depth samples": "SELECT * FROM queue_samples WHERE sampled_at_utc >= 1 "
    "ORDER BY sampled_at_utc",
    "oldest due task": "SELECT MIN(run_after_utc) FROM task_queue "
    "WHERE status = 'queued' AND pending_deps = 0 AND run_after_utc <= 1",
    "dead letters page": "SELECT * FROM task_queue WHERE status = 'failed' "
    "ORDER BY id DESC LIMIT 50",
    "tasks ?type=": "SELECT * FROM task_queue WHERE type = 'x' ORDER BY id DESC LIMIT 50",
    "running tasks": "SELECT id FROM task_queue WHERE status = 'leased' "
    "ORDER BY lease_until_utc LIMIT 1000",
}


def fill(db: Database, n: int, span_seconds: int = 86_400) -> float:
    """N tasks created over the last ``span_seconds``, four workers and an hour of depth
    samples; returns the seconds it took."""
    import orjson

    started = time.perf_counter()
    now = utcnow()
    sqlite = db.engine.dialect.name == "sqlite"
    params: dict[str, Any] = {"n": n, "types_json": orjson.dumps(TYPES).decode()}
    if sqlite:
        params.update(now=to_micros(now), day=span_seconds * 1_000_000)
    else:
        params.update(day=float(span_seconds))
    with db.write() as conn:
        conn.execute(text(_SQLITE_FILL if sqlite else _PG_FILL), params)
        for i in range(4):
            conn.execute(
                text(
                    "INSERT INTO workers (worker_id, capabilities, heartbeat_utc, started_at_utc,"
                    " hostname, pid, task_types, concurrency) VALUES (:w, '{}', :hb, :hb,"
                    " 'bench-host', :pid, :types, 4)"
                ).bindparams(),
                {
                    "w": f"worker-{i}",
                    "hb": to_micros(now) if sqlite else now,
                    "pid": 1000 + i,
                    "types": orjson.dumps(TYPES).decode(),
                },
            )
        queued = n * 13 // 100
        for minute in range(60, 0, -1):
            at = (now - timedelta(minutes=minute)).replace(second=0, microsecond=0)
            conn.execute(
                text(
                    "INSERT INTO queue_samples (sampled_at_utc, queued, due, leased) "
                    "VALUES (:at, :q, :d, :l)"
                ),
                {
                    "at": to_micros(at) if sqlite else at,
                    "q": queued + (minute * 37) % 500,
                    "d": queued - n // 100 + (minute * 37) % 500,
                    "l": n // 100,
                },
            )
    with db.write() as conn:
        conn.execute(text("ANALYZE"))
    return time.perf_counter() - started


def explain(db: Database) -> dict[str, str]:
    if db.engine.dialect.name != "sqlite":
        return {}
    plans = {}
    with db.read() as conn:
        for name, sql in EXPLAINED.items():
            rows = conn.execute(text(f"EXPLAIN QUERY PLAN {sql}")).all()
            plans[name] = "; ".join(row[-1] for row in rows)
    return plans


@contextlib.contextmanager
def serving(db: Database) -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(database=db), host="127.0.0.1", port=port, log_level="error")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            httpx.get(f"{base}/health", timeout=1)
            break
        time.sleep(0.05)
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(10)


def time_pages(
    base: str, middle: int, reps: int, pages: list[tuple[str, str]] = PAGES
) -> dict[str, dict[str, float]]:
    """Wall time per request, and the CPU time this process (server and client) spent on it:
    on a loaded machine the wall time mostly measures the wait for a core."""
    results = {}
    with httpx.Client(base_url=base, timeout=60) as client:
        for name, path in pages:
            url = path.format(middle=middle)
            response = client.get(url)
            assert response.status_code == 200, (url, response.status_code)
            samples = []
            cpu = []
            for _ in range(reps):
                started, cpu_started = time.perf_counter(), time.process_time()
                response = client.get(url)
                samples.append((time.perf_counter() - started) * 1000)
                cpu.append((time.process_time() - cpu_started) * 1000)
                assert response.status_code == 200
            results[name] = {
                "median_ms": round(statistics.median(samples), 1),
                "max_ms": round(max(samples), 1),
                "cpu_ms": round(statistics.median(cpu), 1),
            }
    return results


def make_failures_rare(db: Database) -> None:
    """The dead-letter list's worst case: 60 failed tasks, all old, in the whole history."""
    with db.write() as conn:
        conn.execute(
            text(
                "UPDATE task_queue SET status = 'completed', error_message = NULL "
                "WHERE status = 'failed' AND id > 1000"
            )
        )
    with db.write() as conn:
        conn.execute(text("ANALYZE"))


def run_size(n: int, reps: int, database_url: str | None, workdir: Path) -> dict[str, Any]:
    url = database_url or sqlite_url_for(workdir / f"dashboard-{n}.db")
    db = Database(url, QueueSettings())
    try:
        migrate.upgrade(db)
        if database_url is not None:
            with db.write() as conn:
                conn.execute(
                    text(
                        "TRUNCATE task_logs, task_queue, workers, queue_samples, "
                        "dashboard_sessions RESTART IDENTITY CASCADE"
                    )
                )
        fill_seconds = fill(db, n)
        plans = explain(db)
        with serving(db) as base:
            pages = time_pages(base, n // 2, reps)
            pages.update(time_pages(base, n // 2, min(reps, 3), SLOW_REFERENCE))
            make_failures_rare(db)
            pages.update(
                time_pages(base, n // 2, reps, [("dead letters, 60 failed in all", "/ui/dead")])
            )
    finally:
        db.dispose()
    return {
        "tasks": n,
        "backend": db.engine.dialect.name,
        "fill_seconds": round(fill_seconds, 1),
        "pages": pages,
        "plans": plans,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--database-url", help="PostgreSQL to use (emptied first!)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.tasks:
            result = run_size(n, args.reps, args.database_url, Path(tmp))
            results.append(result)
            print(f"\n{result['backend']}, {n:,} tasks (filled in {result['fill_seconds']} s)")
            print(f"  {'page':<32} {'median ms':>10} {'max ms':>8} {'CPU ms':>8}")
            for name, f in result["pages"].items():
                print(f"  {name:<32} {f['median_ms']:>10} {f['max_ms']:>8} {f['cpu_ms']:>8}")
            for name, plan in result["plans"].items():
                print(f"  plan {name}: {plan}")
    if args.json:
        import orjson

        args.json.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
