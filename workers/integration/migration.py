"""Moving runs between the managers: into the queue at the switch, back to memory on rollback.

Both directions are safe to repeat: a run enters the queue under its run_id as idempotency
key, so migrating twice enqueues once; a rollback only moves tasks it could cancel while they
were still queued, so no run is left both in the queue and in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from pydantic import ValidationError

from queue_core.errors import InvalidTransition, QueueError, TaskNotFound
from queue_core.schemas import Task
from queue_core.settings import LIST_LIMIT_MAX
from queue_core.states import TaskStatus
from workers.integration.handlers import HandlerNotRegistered
from workers.integration.inmemory import InMemoryTaskManager
from workers.integration.manager import QueueTaskManager
from workers.integration.runs import Run, RunStatus
from workers.integration.tracking import new_run, snapshot_of, snapshots_by_run_id

log = logging.getLogger("prismq.queue.integration")

MIGRATED_STATUSES = frozenset({RunStatus.QUEUED, RunStatus.RUNNING})


@dataclass
class MigrationReport:
    enqueued: list[str] = field(default_factory=list)
    """Runs now waiting in the queue (a run that was running starts again from the beginning)."""
    already_enqueued: list[str] = field(default_factory=list)
    """Runs an earlier migration (or start_task) had put in the queue already."""
    skipped: list[str] = field(default_factory=list)
    """Runs that had finished: nothing to move."""
    failed: dict[str, str] = field(default_factory=dict)
    """run_id → why it could not be enqueued (no handler, parameters not JSON, ...)."""


def migrate_runs_to_queue(runs: Iterable[Run], manager: QueueTaskManager) -> MigrationReport:
    """Enqueue every run that is ``queued`` or ``running`` in the old manager's run history.

    Call it after the old process has stopped: its coroutines died with it, so a run that was
    ``running`` is re-queued and runs again from the start (handlers must be idempotent). The
    registry records each moved run as ``queued`` with its ``task_id``. No event loop needed.
    """
    runs = list(runs)
    report = MigrationReport()
    existing = set(snapshots_by_run_id(manager.db, [run.run_id for run in runs]))
    for run in runs:
        if RunStatus(run.status) not in MIGRATED_STATUSES:
            report.skipped.append(run.run_id)
            continue
        if run.run_id in existing:
            manager.start_task(run)  # records the task's current state in the registry
            report.already_enqueued.append(run.run_id)
            continue
        run.status, run.started_at, run.exit_code = RunStatus.QUEUED, None, None
        try:
            manager.start_task(run)
        except (HandlerNotRegistered, ValidationError, QueueError, TypeError) as exc:
            report.failed[run.run_id] = str(exc).splitlines()[0]
            continue
        report.enqueued.append(run.run_id)
    log.info(
        "migration to the queue: %d enqueued, %d already there, %d finished, %d failed",
        len(report.enqueued),
        len(report.already_enqueued),
        len(report.skipped),
        len(report.failed),
    )
    return report


@dataclass
class RollbackReport:
    moved: list[str] = field(default_factory=list)
    """Runs whose queued task was cancelled in the queue and started in memory."""
    finished_in_queue: list[str] = field(default_factory=list)
    """Runs that were running on a worker and were left to finish there (``running="wait"``)."""
    cancelled: list[str] = field(default_factory=list)
    """Runs that were running on a worker and were cancelled (``running="cancel"``)."""
    still_running: list[str] = field(default_factory=list)
    """Runs still on a worker when the wait timed out; a QueueTaskManager can ``track`` them."""


async def rollback_to_in_memory(
    source: QueueTaskManager,
    target: InMemoryTaskManager,
    *,
    module_ids: Iterable[str] | None = None,
    running: Literal["wait", "cancel"] = "wait",
    timeout: float | None = None,
) -> RollbackReport:
    """Hand the queue's unfinished runs back to the in-memory manager.

    - Tasks still ``queued`` (including those waiting for a retry) are cancelled in the queue
      and started in memory from their module handler: the registry keeps its run_ids.
    - Tasks ``leased`` by a worker (running): with ``running="wait"`` they finish on their
      worker (keep the workers up until this returns) and the registry receives their
      outcome; with ``running="cancel"`` their workers are asked to stop them, and they end
      ``cancelled``.

    Only tasks with a run_id (idempotency key) of the given modules (default: every module
    the in-memory manager has a handler for) are touched.
    """
    modules = sorted(set(module_ids) if module_ids is not None else target.handlers.module_ids())
    report = RollbackReport()
    for task in _unfinished_runs(source, modules, TaskStatus.QUEUED):
        assert task.idempotency_key is not None
        try:
            await asyncio.to_thread(source.tasks.cancel, task.task_id)
        except (InvalidTransition, TaskNotFound):
            continue  # a worker claimed it meanwhile: it is running, handled below
        source.forget(task.idempotency_key)  # its cancelled task no longer speaks for the run
        run = source.registry.get_run(task.idempotency_key) or new_run(snapshot_of(task))
        run.status, run.started_at, run.completed_at = RunStatus.QUEUED, None, None
        run.exit_code, run.error_message, run.task_id = None, None, None
        if target.registry.get_run(run.run_id) is None:
            target.registry.add_run(run)
        else:
            target.registry.update_run(run)
        target.start_task(run)
        report.moved.append(run.run_id)
    leased = [t.idempotency_key for t in _unfinished_runs(source, modules, TaskStatus.LEASED)]
    run_ids = [key for key in leased if key is not None]
    await source.track(run_ids)
    if running == "cancel":
        for run_id in run_ids:
            await source.cancel_task(run_id)
            report.cancelled.append(run_id)
    with contextlib.suppress(asyncio.TimeoutError):
        await source.wait_all(timeout)
    report.still_running = [r for r in run_ids if source.is_task_active(r)]
    if running == "wait":
        report.finished_in_queue = [r for r in run_ids if not source.is_task_active(r)]
    log.info(
        "rollback to in-memory: %d moved, %d finished in the queue, %d cancelled, %d still running",
        len(report.moved),
        len(report.finished_in_queue),
        len(report.cancelled),
        len(report.still_running),
    )
    return report


def _unfinished_runs(
    source: QueueTaskManager, modules: list[str], status: TaskStatus
) -> list[Task]:
    found: list[Task] = []
    for module_id in modules:
        before_id: int | None = None
        while True:
            page = source.tasks.list(
                status=status, type=module_id, limit=LIST_LIMIT_MAX, before_id=before_id
            )
            found += [task for task in page if task.idempotency_key]
            if len(page) < LIST_LIMIT_MAX:
                break
            before_id = page[-1].task_id
    return found
