"""Reading task states for runs, and copying them onto the runs.

Runs find their task by the idempotency key (= run_id) or by the task id kept on the run.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, select

from queue_core.database import Database
from queue_core.models import TaskRow
from queue_core.schemas import Task
from queue_core.states import TaskStatus
from workers.integration.runs import Run, RunStatus
from workers.integration.status import run_status_for

TASKS: Table = TaskRow.__table__  # type: ignore[assignment]
LOOKUP_CHUNK = 500  # ids per IN (...) list: far below SQLite's and PostgreSQL's parameter limits

_SNAPSHOT_COLUMNS = (
    TASKS.c.id,
    TASKS.c.type,
    TASKS.c.payload,
    TASKS.c.status,
    TASKS.c.attempts,
    TASKS.c.error_message,
    TASKS.c.processing_started_utc,
    TASKS.c.finished_at_utc,
    TASKS.c.idempotency_key,
)


@dataclass(frozen=True)
class TaskSnapshot:
    """The columns of a task that decide its run's status."""

    task_id: int
    type: str
    payload: dict[str, Any]
    status: TaskStatus
    attempts: int
    error_message: str | None
    processing_started_utc: datetime | None
    finished_at_utc: datetime | None
    idempotency_key: str | None

    @classmethod
    def of(cls, task: Task) -> TaskSnapshot:
        return cls(
            task.task_id,
            task.type,
            task.payload,
            TaskStatus(task.status),
            task.attempts,
            task.error_message,
            task.processing_started_utc,
            task.finished_at_utc,
            task.idempotency_key,
        )

    @property
    def run_status(self) -> RunStatus:
        return run_status_for(self.status, self.attempts)

    def new_run(self) -> Run:
        """A run rebuilt from its task: type is the module, payload the parameters."""
        run = Run(
            run_id=self.idempotency_key or f"task-{self.task_id}",
            module_id=self.type,
            parameters=dict(self.payload),
            task_id=self.task_id,
        )
        apply_snapshot(run, self)
        return run


def _snapshot(row: Any) -> TaskSnapshot:
    m = row._mapping
    return TaskSnapshot(
        m["id"],
        m["type"],
        m["payload"],
        TaskStatus(m["status"]),
        m["attempts"],
        m["error_message"],
        m["processing_started_utc"],
        m["finished_at_utc"],
        m["idempotency_key"],
    )


def _chunks(values: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), LOOKUP_CHUNK):
        yield values[start : start + LOOKUP_CHUNK]


def snapshots_by_id(db: Database, task_ids: Iterable[int]) -> dict[int, TaskSnapshot]:
    ids = sorted(set(task_ids))
    found: dict[int, TaskSnapshot] = {}
    with db.read() as conn:
        for chunk in _chunks(ids):
            for row in conn.execute(select(*_SNAPSHOT_COLUMNS).where(TASKS.c.id.in_(chunk))):
                snap = _snapshot(row)
                found[snap.task_id] = snap
    return found


def snapshots_by_run_id(db: Database, run_ids: Iterable[str]) -> dict[str, TaskSnapshot]:
    keys = sorted(set(run_ids))
    found: dict[str, TaskSnapshot] = {}
    with db.read() as conn:
        for chunk in _chunks(keys):
            query = select(*_SNAPSHOT_COLUMNS).where(TASKS.c.idempotency_key.in_(chunk))
            for row in conn.execute(query):
                snap = _snapshot(row)
                assert snap.idempotency_key is not None
                found[snap.idempotency_key] = snap
    return found


def apply_snapshot(run: Run, snap: TaskSnapshot) -> bool:
    """Bring ``run`` in line with its task; True when anything the registry shows changed.

    Statuses only move forward: a run that was running stays running while its task waits
    for a retry or was released by a worker shutting down."""
    before = (run.status, run.exit_code, run.error_message, run.task_id)
    run.task_id = snap.task_id
    target = snap.run_status
    if target is RunStatus.QUEUED and run.status is not RunStatus.QUEUED:
        target = run.status
    if target is RunStatus.RUNNING and run.status is not RunStatus.RUNNING:
        run.mark_running(snap.processing_started_utc)
    elif target is RunStatus.COMPLETED:
        run.mark_completed(snap.finished_at_utc)
    elif target is RunStatus.FAILED:
        run.mark_failed(snap.error_message or "failed", snap.finished_at_utc)
    elif target is RunStatus.CANCELLED:
        run.mark_cancelled(snap.finished_at_utc)
    if target is RunStatus.RUNNING and snap.status is TaskStatus.QUEUED and snap.error_message:
        run.error_message = snap.error_message  # the last attempt's error, while a retry waits
    return before != (run.status, run.exit_code, run.error_message, run.task_id)
