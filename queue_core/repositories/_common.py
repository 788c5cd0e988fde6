"""Pieces the repositories share: tables and the one row-to-Task mapper.

Task-log rows are built with :func:`queue_core.audit.log_entry` and written by the one
writer, :class:`queue_core.audit.TaskLogWriter`. Document validation lives in
:mod:`queue_core.validation`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import Row, Table

from queue_core.audit import log_entry
from queue_core.models import TaskDependencyRow, TaskLogRow, TaskRow, WorkerRow
from queue_core.schemas import Task, TaskLog
from queue_core.states import TaskStatus

TASKS: Table = TaskRow.__table__  # type: ignore[assignment]
LOGS: Table = TaskLogRow.__table__  # type: ignore[assignment]
WORKERS: Table = WorkerRow.__table__  # type: ignore[assignment]
DEPENDENCIES: Table = TaskDependencyRow.__table__  # type: ignore[assignment]

__all__ = ["LOGS", "TASKS", "WORKERS", "log_entry", "log_from_row", "task_from_row"]


def _same(value: Any) -> Any:
    return value


def task_from_row(
    row: Row[Any] | Mapping[str, Any],
    *,
    read_time: Callable[[Any], Any] = _same,
    read_json: Callable[[Any], Any] = _same,
) -> Task:
    """The one row-to-Task mapper. A SQLAlchemy row arrives converted; a DBAPI row (as a
    mapping of column names) comes with the dialect's ``read_time`` and ``read_json``."""
    m: Mapping[str, Any] = row._mapping if isinstance(row, Row) else row  # type: ignore[assignment]

    def time(name: str) -> Any:
        value = m[name]
        return None if value is None else read_time(value)

    def document(name: str) -> Any:
        value = m[name]
        return None if value is None else read_json(value)

    return Task.model_construct(
        task_id=m["id"],
        type=m["type"],
        status=TaskStatus(m["status"]),
        priority=m["priority"],
        attempts=m["attempts"],
        max_attempts=m["max_attempts"],
        payload=document("payload"),
        compatibility=document("compatibility"),
        idempotency_key=m["idempotency_key"],
        run_after_utc=time("run_after_utc"),
        created_at_utc=time("created_at_utc"),
        updated_at_utc=time("updated_at_utc"),
        processing_started_utc=time("processing_started_utc"),
        finished_at_utc=time("finished_at_utc"),
        locked_by=m["locked_by"],
        lease_until_utc=time("lease_until_utc"),
        cancel_requested=bool(m["cancel_requested"]),
        error_message=m["error_message"],
        result=document("result"),
        timeout_seconds=m["timeout_seconds"],
        schedule=m.get("schedule"),
        depends_on=[],
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
