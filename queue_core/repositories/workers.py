"""WorkerRepository: the ``workers`` table, heartbeats, and giving up stale workers' tasks."""

from __future__ import annotations

import builtins
import os
import socket
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import RowMapping, bindparam, delete, select, text, update

from queue_core.clock import Clock, utcnow
from queue_core.database import Database
from queue_core.repositories._common import WORKERS
from queue_core.repositories.leases import LeaseRepository, RecoveryReport
from queue_core.schemas import WorkerInfo
from queue_core.types import JsonDocument, UtcDateTime

# The same upsert text works on SQLite (3.24+) and PostgreSQL.
_REGISTER = text(
    """
    INSERT INTO workers (worker_id, capabilities, heartbeat_utc, started_at_utc, stopped_at_utc,
                         hostname, pid, task_types, concurrency, strategy)
    VALUES (:worker_id, :capabilities, :now, :now, NULL, :hostname, :pid, :task_types,
            :concurrency, :strategy)
    ON CONFLICT (worker_id) DO UPDATE SET
        capabilities = excluded.capabilities,
        heartbeat_utc = excluded.heartbeat_utc,
        started_at_utc = excluded.started_at_utc,
        stopped_at_utc = NULL,
        hostname = excluded.hostname,
        pid = excluded.pid,
        task_types = excluded.task_types,
        concurrency = excluded.concurrency,
        strategy = excluded.strategy
    """
).bindparams(
    bindparam("capabilities", type_=JsonDocument),
    bindparam("task_types", type_=JsonDocument),
    bindparam("now", type_=UtcDateTime()),
)


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class WorkerRepository:
    def __init__(self, db: Database, clock: Clock = utcnow) -> None:
        self.db = db
        self.clock = clock

    @property
    def stale_after(self) -> timedelta:
        return timedelta(seconds=self.db.settings.worker_stale_after_seconds)

    def register(
        self,
        worker_id: str,
        *,
        capabilities: Mapping[str, Any] | None = None,
        task_types: Sequence[str] = (),
        concurrency: int = 1,
        strategy: str | None = None,
    ) -> WorkerInfo:
        now = self.clock()
        with self.db.write() as conn:
            conn.execute(
                _REGISTER,
                {
                    "worker_id": worker_id,
                    "capabilities": dict(capabilities or {}),
                    "now": now,
                    "hostname": socket.gethostname(),
                    "pid": os.getpid(),
                    "task_types": sorted(task_types),
                    "concurrency": concurrency,
                    "strategy": strategy,
                },
            )
        return self.get(worker_id)

    def heartbeat(self, worker_id: str) -> None:
        with self.db.write() as conn:
            conn.execute(
                update(WORKERS)
                .where(WORKERS.c.worker_id == worker_id)
                .values(heartbeat_utc=self.clock(), stopped_at_utc=None)
            )

    def stop(self, worker_id: str) -> None:
        """Mark a worker as exited cleanly."""
        with self.db.write() as conn:
            conn.execute(
                update(WORKERS)
                .where(WORKERS.c.worker_id == worker_id)
                .values(stopped_at_utc=self.clock())
            )

    def forget(self, worker_id: str) -> None:
        with self.db.write() as conn:
            conn.execute(delete(WORKERS).where(WORKERS.c.worker_id == worker_id))

    def get(self, worker_id: str) -> WorkerInfo:
        with self.db.read() as conn:
            row = conn.execute(select(WORKERS).where(WORKERS.c.worker_id == worker_id)).one()
        return self._info(row._mapping, self.clock())

    def list(self) -> builtins.list[WorkerInfo]:
        now = self.clock()
        with self.db.read() as conn:
            rows = conn.execute(select(WORKERS).order_by(WORKERS.c.heartbeat_utc.desc())).all()
        return [self._info(row._mapping, now) for row in rows]

    def _info(self, row: RowMapping, now: datetime) -> WorkerInfo:
        active = row["stopped_at_utc"] is None and row["heartbeat_utc"] >= now - self.stale_after
        return WorkerInfo(
            worker_id=row["worker_id"],
            capabilities=row["capabilities"],
            heartbeat_utc=row["heartbeat_utc"],
            status="active" if active else "stale",
            started_at_utc=row["started_at_utc"],
            stopped_at_utc=row["stopped_at_utc"],
            hostname=row["hostname"],
            pid=row["pid"],
            task_types=builtins.list(row["task_types"] or []),
            concurrency=row["concurrency"],
            strategy=row["strategy"],
        )

    def stale_worker_ids(self) -> builtins.list[str]:
        """Workers whose heartbeats stopped without a clean exit."""
        cutoff = self.clock() - self.stale_after
        with self.db.read() as conn:
            return builtins.list(
                conn.execute(
                    select(WORKERS.c.worker_id).where(
                        WORKERS.c.stopped_at_utc.is_(None), WORKERS.c.heartbeat_utc < cutoff
                    )
                ).scalars()
            )


def sweep(db: Database, clock: Clock = utcnow) -> RecoveryReport:
    """Recover expired leases, then every task still held by a stale worker.

    Idempotent, and safe while workers run: every change is guarded by the lease token.
    """
    leases = LeaseRepository(db, clock)
    report = RecoveryReport()
    while True:
        batch = leases.recover_expired()
        report.merge(batch)
        if batch.total == 0:
            break
    for worker_id in WorkerRepository(db, clock).stale_worker_ids():
        report.merge(leases.release_worker_tasks(worker_id, "worker stopped sending heartbeats"))
    return report
