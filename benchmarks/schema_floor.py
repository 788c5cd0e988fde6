"""What prismq-queue's own SQL costs on its own schema, with no Python layer on top.

``python -m benchmarks.schema_floor [--rows N] [--reps R]`` runs plain ``sqlite3`` on:

* ``raw``: the raw loop's table (5 columns, one partial index);
* ``wide``: prismq-queue's 23 task columns, one partial index, no CHECK constraints;
* ``wide+checks``: the same with prismq-queue's CHECK constraints;
* ``wide+indexes``: the same 23 columns with the claim strategies' 4 indexes, no CHECKs;
* ``prismq``: a database migrated by ``queue_core.migrate`` (the real schema);
* ``prismq+log``: the same, each enqueue also writing its ``enqueued`` task_logs row.

For each it measures single enqueues (one transaction each, W1's shape) and batches of
1,000 rows per transaction (W2's shape), interleaving the variants rep by rep, and prints
medians. It is the floor an enqueue cannot go below without storing less (docs/benchmarks.md,
"Why some targets stay out of reach").
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from queue_core import migrate
from queue_core.database import Database
from queue_core.dialects import sqlite_sql
from queue_core.settings import sqlite_url_for

PAD = "x" * 60
RAW_TABLE = (
    "CREATE TABLE tasks(id INTEGER PRIMARY KEY, status TEXT NOT NULL DEFAULT 'queued', "
    "priority INTEGER NOT NULL DEFAULT 0, payload TEXT NOT NULL, lease_expires_at REAL)",
    "CREATE INDEX tasks_queued ON tasks(priority, id) WHERE status = 'queued'",
)
RAW_INSERT = "INSERT INTO tasks(status, priority, payload) VALUES ('queued', 0, :payload)"
WIDE_COLUMNS = """id INTEGER PRIMARY KEY AUTOINCREMENT, type VARCHAR(200) NOT NULL,
    priority INTEGER NOT NULL, payload TEXT NOT NULL, compatibility TEXT NOT NULL,
    status VARCHAR(16) NOT NULL, attempts INTEGER NOT NULL, max_attempts INTEGER NOT NULL,
    run_after_utc BIGINT NOT NULL, lease_until_utc BIGINT, reserved_at_utc BIGINT,
    processing_started_utc BIGINT, finished_at_utc BIGINT, locked_by VARCHAR(200),
    error_message TEXT, idempotency_key VARCHAR(255), created_at_utc BIGINT NOT NULL,
    updated_at_utc BIGINT NOT NULL, result TEXT, cancel_requested BOOLEAN NOT NULL,
    timeout_seconds FLOAT, lease_token INTEGER NOT NULL, wr_key FLOAT, schedule TEXT,
    pending_deps INTEGER NOT NULL DEFAULT 0"""
CHECKS = """,
    CHECK (status IN ('queued', 'leased', 'completed', 'failed', 'cancelled')),
    CHECK (priority BETWEEN 1 AND 1000), CHECK (attempts >= 0), CHECK (max_attempts >= 1),
    CHECK (typeof(run_after_utc) IN ('integer', 'null')),
    CHECK (typeof(lease_until_utc) IN ('integer', 'null')),
    CHECK (typeof(reserved_at_utc) IN ('integer', 'null')),
    CHECK (typeof(processing_started_utc) IN ('integer', 'null')),
    CHECK (typeof(finished_at_utc) IN ('integer', 'null')),
    CHECK (typeof(created_at_utc) IN ('integer', 'null')),
    CHECK (typeof(updated_at_utc) IN ('integer', 'null'))"""
INDEXES = (
    "CREATE INDEX i_fifo ON task_queue (run_after_utc, id) WHERE status = 'queued'",
    "CREATE INDEX i_weighted ON task_queue (wr_key) WHERE status = 'queued' AND wr_key IS NOT NULL",
    # revision 0006: (type) over queued rows replaces (status, type) over the whole history
    "CREATE INDEX i_queued_type ON task_queue (type) WHERE status = 'queued'",
)
PRIORITY_INDEX = (
    "CREATE INDEX i_priority ON task_queue (priority, run_after_utc, id) WHERE status = 'queued'"
)
CLOCK = "CREATE TABLE task_queue_clock (id INTEGER PRIMARY KEY, vtime FLOAT NOT NULL)"
LOG_DETAILS = '{"event":"enqueued","type":"bench.noop","priority":100}'

Variant = tuple[str, Callable[[Path], None], str, bool]


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def _create(statements: tuple[str, ...]) -> Callable[[Path], None]:
    def create(path: Path) -> None:
        conn = _connect(path)
        for statement in statements:
            conn.execute(statement)
        conn.close()

    return create


def _migrated(path: Path) -> None:
    db = Database(sqlite_url_for(path))
    migrate.upgrade(db)
    db.dispose()


def variants() -> list[Variant]:
    wide = f"CREATE TABLE task_queue ({WIDE_COLUMNS})"
    checked = f"CREATE TABLE task_queue ({WIDE_COLUMNS}{CHECKS})"
    enqueue = sqlite_sql.ENQUEUE_MANY_SQL
    return [
        ("raw", _create(RAW_TABLE), RAW_INSERT, False),
        ("wide", _create((wide, PRIORITY_INDEX, CLOCK)), enqueue, False),
        ("wide+checks", _create((checked, PRIORITY_INDEX, CLOCK)), enqueue, False),
        ("wide+indexes", _create((wide, PRIORITY_INDEX, *INDEXES, CLOCK)), enqueue, False),
        ("prismq", _migrated, enqueue, False),
        ("prismq+log", _migrated, enqueue, True),
    ]


def _rows(n: int) -> list[dict[str, object]]:
    now = int(time.time() * 1e6)
    return [
        {
            "type": "bench.noop",
            "priority": 100,
            "payload": orjson.dumps({"id": i, "t": 0.0, "pad": PAD}).decode(),
            "compatibility": "{}",
            "max_attempts": 5,
            "run_after_utc": now,
            "idempotency_key": None,
            "now": now,
            "timeout_seconds": None,
            "wr_weight": random.random(),
            "schedule": None,
            "pending_deps": 0,
        }
        for i in range(n)
    ]


def measure(variant: Variant, rows: int, directory: Path) -> tuple[float, float]:
    """(single enqueues per s, batched rows per s) for one fresh database."""
    name, create, insert, with_log = variant
    path = directory / f"{name}-{time.monotonic_ns()}.db"
    create(path)
    conn = _connect(path)
    log_sql = sqlite_sql.INSERT_LOG_SQL
    singles = _rows(rows)

    def one(row: dict[str, object]) -> None:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(insert, row)
        if with_log:
            task_id = conn.execute("SELECT last_insert_rowid()").fetchone()[0]
            log = {"task_id": task_id, "at_utc": row["now"], "level": "INFO"}
            conn.execute(log_sql, {**log, "message": "enqueued", "details": LOG_DETAILS})
        conn.execute("COMMIT")

    for row in singles[:100]:  # warm-up
        one(row)
    t0 = time.perf_counter()
    for row in singles:
        one(row)
    single_rate = len(singles) / (time.perf_counter() - t0)

    batches = [_rows(1000) for _ in range(max(1, rows // 1000))]
    t0 = time.perf_counter()
    for batch in batches:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(insert, batch)
        conn.execute("COMMIT")
    batch_rate = sum(len(b) for b in batches) / (time.perf_counter() - t0)
    conn.close()
    return single_rate, batch_rate


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.schema_floor")
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args(argv)
    results: dict[str, list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(a.reps):
            for variant in variants():
                results.setdefault(variant[0], []).append(measure(variant, a.rows, Path(tmp)))
    print("| schema (plain sqlite3) | single enqueue, tasks/s | batches of 1,000, rows/s |")
    print("|---|---|---|")
    for name, runs in results.items():
        single = statistics.median(r[0] for r in runs)
        batch = statistics.median(r[1] for r in runs)
        print(f"| {name} | {single:,.0f} | {batch:,.0f} |")


if __name__ == "__main__":
    main()
