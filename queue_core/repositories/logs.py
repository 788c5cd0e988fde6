"""TaskLogRepository: the ``task_logs`` rows handlers and operators write and read."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from queue_core.audit import log_entry
from queue_core.clock import Clock, utcnow
from queue_core.database import Database
from queue_core.repositories._common import LOGS, log_from_row
from queue_core.schemas import TaskLog


class TaskLogRepository:
    def __init__(self, db: Database, clock: Clock = utcnow) -> None:
        self.db = db
        self.clock = clock

    def add(self, task_id: int, message: str, *, level: str = "INFO", **details: Any) -> None:
        self.add_many([log_entry(task_id, message, self.clock(), level=level, **details)])

    def add_many(self, entries: list[dict[str, Any]]) -> None:
        """Rows built with :func:`queue_core.audit.log_entry`, in one transaction."""
        if not entries:
            return
        with self.db.raw.transaction() as cursor:
            self.db.log_writer.write(cursor, entries)

    def for_task(self, task_id: int) -> list[TaskLog]:
        with self.db.read() as conn:
            rows = conn.execute(
                select(LOGS).where(LOGS.c.task_id == task_id).order_by(LOGS.c.log_id)
            )
            return [log_from_row(row) for row in rows]
