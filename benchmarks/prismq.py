"""prismq-queue as a measured system, on SQLite and on PostgreSQL.

The producer is the public Python API, :class:`queue_core.repositories.TaskRepository`
(``enqueue`` for one task, ``enqueue_many`` for a batch); the workers are real
``prismq-queue worker`` processes running :mod:`benchmarks.handlers`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from sqlalchemy import text

from benchmarks.report import AUDIT_FAILURES_VARIANT
from benchmarks.systems import System
from queue_core import migrate
from queue_core.database import Database
from queue_core.repositories import TaskRepository
from queue_core.schemas import TaskCreate
from queue_core.settings import sqlite_url_for

HANDLERS_MODULE = "benchmarks.handlers"
TASK_TYPE = "bench.noop"

# W3 worker settings measured: the CLI defaults, and more slots per process (a worker claims
# as many tasks as it has free slots in one transaction and acknowledges them together).
W3_WORKER_ARGS: dict[str, list[str]] = {
    "default": [],
    "c8": ["--concurrency", "8"],
}


class Prismq(System):
    LIBRARY = "prismq-queue"
    SUPPORTS_BATCH = True
    BATCH_NOTE = "TaskRepository.enqueue_many(1,000 TaskCreate): one transaction per batch"
    W3_VARIANTS = tuple(W3_WORKER_ARGS)
    # W1 with the audit trail cut to failures (issue 11 D); the default is "full".
    W1_VARIANTS = ("default", AUDIT_FAILURES_VARIANT)
    W1_VARIANT_ENV = {AUDIT_FAILURES_VARIANT: {"PRISMQ_QUEUE_AUDIT": "failures"}}
    NOTES = (
        "producer: TaskRepository.enqueue(type=..., payload=...) per task, enqueue_many per "
        "batch; every enqueue writes its task_logs row in the same transaction",
        "workers: `python -m queue_core.cli worker --import benchmarks.handlers` processes "
        "(CLI defaults unless the variant says otherwise); every claim and completion writes "
        "its task_logs row and is guarded by the lease token",
    )

    db: Database | None = None
    repo: TaskRepository | None = None

    @property
    def url(self) -> str:
        raise NotImplementedError

    def workload_unavailable(self, workload: str) -> str | None:
        if workload in ("W3", "W4"):
            try:
                from workers import task  # noqa: F401
            except ImportError as exc:
                return f"the worker runtime is not importable ({exc})"
        return None

    def _clear(self) -> None:
        raise NotImplementedError

    def reset(self) -> None:
        self._clear()
        db = Database(self.url)
        try:
            migrate.upgrade(db)
        finally:
            db.dispose()

    def open_producer(self) -> None:
        self.db = Database(self.url)
        self.repo = TaskRepository(self.db)

    def close_producer(self) -> None:
        if self.db is not None:
            self.db.dispose()

    def enqueue(self, payload: dict[str, Any]) -> None:
        assert self.repo is not None
        self.repo.enqueue(type=TASK_TYPE, payload=payload)

    def enqueue_batch(self, payloads: Sequence[dict[str, Any]]) -> None:
        assert self.repo is not None
        self.repo.enqueue_many([TaskCreate(type=TASK_TYPE, payload=p) for p in payloads])

    def worker_commands(self, nproc: int, variant: str = "default") -> list[list[str]]:
        argv = [
            sys.executable,
            "-m",
            "queue_core.cli",
            "worker",
            "--import",
            HANDLERS_MODULE,
            "--database-url",
            self.url,
            *W3_WORKER_ARGS.get(variant, []),
        ]
        return [list(argv) for _ in range(nproc)]

    def worker_note(self, nproc: int, variant: str = "default") -> str:
        args = " ".join(W3_WORKER_ARGS.get(variant, [])) or "CLI defaults"
        return f"{nproc} `prismq-queue worker` process(es), {args}"

    def verify(self, n: int) -> dict[str, Any]:
        """What the database says after the drain: every task acknowledged, every transition
        logged."""
        db = Database(self.url)
        try:
            with db.read() as conn:
                statuses: dict[str, int] = dict(
                    conn.execute(
                        text("SELECT status, count(*) FROM task_queue GROUP BY status")
                    ).all()
                )
                logs: dict[str, int] = dict(
                    conn.execute(
                        text("SELECT message, count(*) FROM task_logs GROUP BY message")
                    ).all()
                )
        finally:
            db.dispose()
        completed = int(statuses.get("completed", 0))
        return {
            "db_status_counts": statuses,
            "db_log_counts": logs,
            "db_all_completed": completed == n and sum(statuses.values()) == n,
            "db_logs_complete": (
                logs.get("enqueued", 0) == n
                and logs.get("completed", 0) == n
                and logs.get("leased", 0) >= n
            ),
        }


class PrismqSqlite(Prismq):
    BACKEND = "sqlite"

    @property
    def url(self) -> str:
        return sqlite_url_for(self.sqlite_path)

    def _clear(self) -> None:
        self.remove_sqlite_files()


class PrismqPostgres(Prismq):
    BACKEND = "postgresql"
    REQUIRES = ("psycopg",)

    @property
    def url(self) -> str:
        return self.pg_url

    def _clear(self) -> None:
        db = Database(self.url)
        try:
            with db.engine.begin() as conn:
                exists = conn.execute(text("SELECT to_regclass('task_queue')")).scalar()
                if exists is not None:
                    conn.execute(
                        text("TRUNCATE task_logs, task_queue, workers RESTART IDENTITY CASCADE")
                    )
                    conn.execute(text("UPDATE task_queue_clock SET vtime = 0"))
        finally:
            db.dispose()
