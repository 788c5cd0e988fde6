"""The WAL stays bounded over a 20,000-task soak with the scheduler checkpointing, and what
purge and VACUUM then do to the files. The figures are printed (run with -s) and recorded in
docs/operations.md."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from queue_core.database import Database
from queue_core.errors import DatabaseUnavailable
from queue_core.maintenance import checkpoint, purge, vacuum
from queue_core.maintenance._common import FileSizes
from queue_core.repositories import TaskRepository
from queue_core.schemas import TaskCreate
from tests.queue_core.maintenance._procs import soak_worker

TASKS = 20_000
BATCH = 500
MAX_BACKLOG = 3_000
WORKERS = 2
TIMEOUT = 120
MiB = 1024 * 1024
WAL_TRUNCATE_BYTES = 4 * MiB
# Without the scheduler the same soak ends with a WAL of about 104 MiB (docs/operations.md).
WAL_BOUND_BYTES = 64 * MiB  # the automatic checkpoint alone overshoots it by far
WORKER_SETTINGS: dict[str, Any] = {
    "maintenance_checkpoint_interval_seconds": 0.25,
    "maintenance_wal_truncate_bytes": WAL_TRUNCATE_BYTES,
    "maintenance_sweep_interval_seconds": 1.0,
    "maintenance_purge_interval_seconds": 0,  # measured on its own below
}


class OverlappingReaders:
    """Two connections that take turns holding a read transaction, so one is always open: a
    dashboard polling the views. SQLite's automatic PASSIVE checkpoint then never gets to
    start the WAL over, and without the scheduler's TRUNCATE checkpoint the file grows."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        conns = [sqlite3.connect(self.path, isolation_level=None, timeout=5) for _ in range(2)]
        turn = 0
        try:
            for conn in conns:
                conn.execute("BEGIN")
                conn.execute("SELECT COUNT(*) FROM task_queue WHERE status = 'queued'").fetchone()
            while not self.stop.wait(0.02):
                conn = conns[turn]
                conn.execute("COMMIT")
                try:
                    conn.execute("BEGIN")
                    conn.execute("SELECT COUNT(*) FROM task_queue").fetchone()
                except sqlite3.OperationalError:
                    conn.execute("ROLLBACK")  # busy: try again on the next turn
                    conn.execute("BEGIN")
                turn = 1 - turn
        finally:
            for conn in conns:
                conn.close()

    def __enter__(self) -> OverlappingReaders:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=TIMEOUT)


def _unfinished(db: Database) -> int:
    while True:
        try:
            stats = TaskRepository(db).stats()
            return stats.queued_tasks + stats.leased_tasks
        except DatabaseUnavailable:
            continue


def _enqueue(tasks: TaskRepository, start: int) -> None:
    specs = [TaskCreate(type="soak", payload={"n": start + i}) for i in range(BATCH)]
    for _ in range(10):  # a producer retries when the database stays busy past busy_timeout
        try:
            tasks.enqueue_many(specs)
            return
        except DatabaseUnavailable:
            continue
    raise AssertionError("the database stayed busy for ten busy timeouts in a row")


@pytest.mark.slow
def test_wal_stays_bounded_over_a_20000_task_soak(sqlite_url: str) -> None:
    db = Database(sqlite_url)
    path = Path(make_url(sqlite_url).database or "")
    ctx = multiprocessing.get_context("spawn")
    stop, results = ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=soak_worker, args=(sqlite_url, i, stop, WORKER_SETTINGS, results))
        for i in range(WORKERS)
    ]
    wal_samples: list[int] = []
    started = time.monotonic()
    with OverlappingReaders(path):
        for proc in procs:
            proc.start()
        try:
            tasks = TaskRepository(db)
            for start in range(0, TASKS, BATCH):
                while _unfinished(db) > MAX_BACKLOG and time.monotonic() - started < TIMEOUT:
                    wal_samples.append(FileSizes.of(db).wal_bytes)
                    time.sleep(0.02)
                _enqueue(tasks, start)
                wal_samples.append(FileSizes.of(db).wal_bytes)
            while _unfinished(db) and time.monotonic() - started < TIMEOUT:
                wal_samples.append(FileSizes.of(db).wal_bytes)
                time.sleep(0.05)
        finally:
            stop.set()
            outcomes = [results.get(timeout=TIMEOUT) for _ in procs]
            for proc in procs:
                proc.join(timeout=TIMEOUT)
    soak_seconds = time.monotonic() - started
    assert all(proc.exitcode == 0 for proc in procs)
    assert sum(done for _, done, _ in outcomes) == TASKS
    checkpoints = [summary for _, _, runs in outcomes for summary in runs]
    truncates = [s for s in checkpoints if s.startswith("checkpoint truncate")]

    after_soak = FileSizes.of(db)
    report = purge(db, 0, logs_older_than_days=0)
    after_purge = FileSizes.of(db)
    checkpoint(db, "truncate")
    after_purge_checkpoint = FileSizes.of(db)
    vacuumed = vacuum(db)
    after_vacuum = FileSizes.of(db)
    db.dispose()

    def mib(value: int) -> str:
        return f"{value / MiB:.2f} MiB"

    print(
        f"\nsoak: {TASKS} tasks (enqueue + claim + complete) by {WORKERS} worker processes "
        f"with the scheduler, an always-open reader, in {soak_seconds:.1f}s; "
        f"{len(checkpoints)} scheduled checkpoints, {len(truncates)} TRUNCATE "
        f"({sum('busy=1' in s for s in truncates)} busy)\n"
        f"  WAL during the soak: max {mib(max(wal_samples))} over {len(wal_samples)} samples\n"
        f"  after the soak:   db {mib(after_soak.database_bytes)}, "
        f"WAL {mib(after_soak.wal_bytes)}\n"
        f"  after purge:      db {mib(after_purge.database_bytes)}, "
        f"WAL {mib(after_purge.wal_bytes)} ({report.tasks_deleted} tasks, "
        f"{report.task_logs_deleted} logs)\n"
        f"  + truncate ckpt:  db {mib(after_purge_checkpoint.database_bytes)}, "
        f"WAL {mib(after_purge_checkpoint.wal_bytes)}\n"
        f"  after VACUUM:     db {mib(after_vacuum.database_bytes)}, "
        f"WAL {mib(after_vacuum.wal_bytes)} ({vacuumed.seconds:.2f}s)"
    )
    assert truncates, "the WAL passed the threshold, so the scheduler must have truncated it"
    assert max(wal_samples) < WAL_BOUND_BYTES
    assert report.tasks_deleted == TASKS
    assert after_vacuum.database_bytes < after_soak.database_bytes / 4
    assert after_vacuum.wal_bytes == 0
