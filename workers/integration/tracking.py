"""Reading task states for runs, and copying them onto the runs.

Runs find their task by the idempotency key (= run_id) or by the task id kept on the run.
"""

from __future__ import annotations

from collections.abc import Iterable

from queue_core.database import Database
from queue_core.repositories import TaskRepository, TaskSnapshot
from queue_core.schemas import Task
from queue_core.states import TaskStatus
from workers.integration.runs import Run, RunStatus
from workers.integration.status import run_status_for


def snapshot_of(task: Task) -> TaskSnapshot:
    """The columns of ``task`` that decide its run's status."""
    return TaskSnapshot(
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


def new_run(snap: TaskSnapshot) -> Run:
    """A run rebuilt from its task: type is the module, payload the parameters."""
    run = Run(
        run_id=snap.idempotency_key or f"task-{snap.task_id}",
        module_id=snap.type,
        parameters=dict(snap.payload),
        task_id=snap.task_id,
    )
    apply_snapshot(run, snap)
    return run


def snapshots_by_id(db: Database, task_ids: Iterable[int]) -> dict[int, TaskSnapshot]:
    found = TaskRepository(db).snapshots(ids=task_ids)
    return {snap.task_id: snap for snap in found}


def snapshots_by_run_id(db: Database, run_ids: Iterable[str]) -> dict[str, TaskSnapshot]:
    found = TaskRepository(db).snapshots(idempotency_keys=run_ids)
    return {snap.idempotency_key: snap for snap in found if snap.idempotency_key}


def apply_snapshot(run: Run, snap: TaskSnapshot) -> bool:
    """Bring ``run`` in line with its task; True when anything the registry shows changed.

    Statuses only move forward: a run that was running stays running while its task waits
    for a retry or was released by a worker shutting down."""
    before = (run.status, run.exit_code, run.error_message, run.task_id)
    run.task_id = snap.task_id
    target = run_status_for(snap.status, snap.attempts)
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
