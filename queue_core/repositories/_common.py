"""Pieces the repositories share: tables, row conversion, task-log writing.

Document validation lives in :mod:`queue_core.validation`."""

from __future__ import annotations

import random
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, Table, insert

from queue_core.models import TaskLogRow, TaskRow, WorkerRow
from queue_core.schemas import Task, TaskLog
from queue_core.states import TaskStatus

TASKS: Table = TaskRow.__table__  # type: ignore[assignment]
LOGS: Table = TaskLogRow.__table__  # type: ignore[assignment]
WORKERS: Table = WorkerRow.__table__  # type: ignore[assignment]

INSERT_LOG = insert(LOGS)


def task_from_row(row: Row[Any]) -> Task:
    mapping = row._mapping
    return Task.model_construct(
        task_id=mapping["id"],
        type=mapping["type"],
        status=TaskStatus(mapping["status"]),
        priority=mapping["priority"],
        attempts=mapping["attempts"],
        max_attempts=mapping["max_attempts"],
        payload=mapping["payload"],
        compatibility=mapping["compatibility"],
        idempotency_key=mapping["idempotency_key"],
        run_after_utc=mapping["run_after_utc"],
        created_at_utc=mapping["created_at_utc"],
        updated_at_utc=mapping["updated_at_utc"],
        processing_started_utc=mapping["processing_started_utc"],
        finished_at_utc=mapping["finished_at_utc"],
        locked_by=mapping["locked_by"],
        lease_until_utc=mapping["lease_until_utc"],
        cancel_requested=bool(mapping["cancel_requested"]),
        error_message=mapping["error_message"],
        result=mapping["result"],
        timeout_seconds=mapping["timeout_seconds"],
    )


def log_from_row(row: Row[Any]) -> TaskLog:
    m = row._mapping
    return TaskLog(
        log_id=m["log_id"],
        task_id=m["task_id"],
        at_utc=m["at_utc"],
        level=m["level"],
        message=m["message"],
        details=m["details"],
    )


def log_entry(
    task_id: int,
    message: str,
    now: datetime,
    *,
    level: str = "INFO",
    **details: Any,
) -> dict[str, Any]:
    """One task_logs row; ``details`` keeps only the keys that have a value."""
    return {
        "task_id": task_id,
        "at_utc": now,
        "level": level,
        "message": message,
        "details": {key: value for key, value in details.items() if value is not None} or None,
    }


def write_logs(conn: Connection, entries: list[dict[str, Any]]) -> None:
    if entries:
        conn.execute(INSERT_LOG, entries)


def jittered(delay: float, fraction: float, rng: random.Random) -> float:
    """``delay`` spread by up to ±fraction, so retries of many tasks do not arrive together."""
    return max(0.0, delay * (1 + rng.uniform(-fraction, fraction)))
