"""Moving runs into the queue and back, as functions (the scripts in examples/ wrap them)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from queue_core.database import Database
from queue_core.repositories import LeaseRepository, TaskRepository
from queue_core.states import TaskStatus
from tests.integration.handlers import compat_handlers
from workers.integration import (
    InMemoryRunRegistry,
    InMemoryTaskManager,
    QueueTaskManager,
    Run,
    RunStatus,
)
from workers.integration.migration import migrate_runs_to_queue, rollback_to_in_memory


def history(registry: InMemoryRunRegistry, *runs: Run) -> None:
    for run in runs:
        registry.add_run(run)


def queue_manager(db: Database, registry: InMemoryRunRegistry, **options: Any) -> QueueTaskManager:
    return QueueTaskManager(
        registry, db, compat_handlers, sync_min_interval=0.01, sync_max_interval=0.1, **options
    )


def test_unfinished_runs_move_into_the_queue_once(db: Database) -> None:
    registry = InMemoryRunRegistry()
    history(
        registry,
        Run("queued", "compat.echo", {"n": 1}),
        Run("running", "compat.echo", {"n": 2}, status=RunStatus.RUNNING),
        Run("done", "compat.echo", {}, status=RunStatus.COMPLETED, exit_code=0),
        Run("failed", "compat.echo", {}, status=RunStatus.FAILED),
        Run("orphan", "compat.nothing", {}),
        Run("bad-params", "compat.echo", {"x": {1, 2}}),
    )
    manager = queue_manager(db, registry)
    report = migrate_runs_to_queue(registry.list_runs(), manager)
    assert sorted(report.enqueued) == ["queued", "running"]
    assert sorted(report.skipped) == ["done", "failed"]
    assert sorted(report.failed) == ["bad-params", "orphan"]
    tasks = {t.idempotency_key: t for t in TaskRepository(db).list()}
    assert set(tasks) == {"queued", "running"}
    assert tasks["running"].payload == {"n": 2}
    moved = registry.get_run("running")
    assert moved is not None
    assert (moved.status, moved.task_id) == (RunStatus.QUEUED, tasks["running"].task_id)

    again = migrate_runs_to_queue(registry.list_runs(), queue_manager(db, registry))
    assert again.enqueued == []
    assert sorted(again.already_enqueued) == ["queued", "running"]
    assert len(TaskRepository(db).list()) == 2


def test_rollback_moves_queued_runs_and_waits_for_running_ones(db: Database) -> None:
    registry = InMemoryRunRegistry()
    leases = LeaseRepository(db)

    async def scenario() -> None:
        source = queue_manager(db, registry)
        source.start_task(Run("on-worker", "compat.echo", {"n": 0}))
        (claimed,) = leases.claim("w1", ["compat.echo"])
        for i in range(3):
            source.start_task(Run(f"waiting-{i}", "compat.echo", {"n": i + 1}))
        target = InMemoryTaskManager(registry, compat_handlers)

        finisher = threading.Timer(0.3, leases.complete, (claimed.lease, {"ok": 1}))
        finisher.start()
        report = await rollback_to_in_memory(source, target, timeout=30)
        finisher.join()
        await target.wait_all(timeout=30)
        await source.close()
        assert sorted(report.moved) == ["waiting-0", "waiting-1", "waiting-2"]
        assert report.finished_in_queue == ["on-worker"]
        assert report.cancelled == []
        assert report.still_running == []

    asyncio.run(scenario())
    for i in range(3):
        run = registry.get_run(f"waiting-{i}")
        assert run is not None
        assert run.status is RunStatus.COMPLETED  # ran in memory
        assert run.task_id is None
        assert registry.statuses(f"waiting-{i}")[-3:] == [
            RunStatus.QUEUED,
            RunStatus.RUNNING,
            RunStatus.COMPLETED,
        ]
    assert {t.idempotency_key: t.status for t in TaskRepository(db).list()} == {
        "on-worker": TaskStatus.COMPLETED,
        "waiting-0": TaskStatus.CANCELLED,
        "waiting-1": TaskStatus.CANCELLED,
        "waiting-2": TaskStatus.CANCELLED,
    }
    finished = registry.get_run("on-worker")
    assert finished is not None
    assert finished.status is RunStatus.COMPLETED


def test_rollback_can_cancel_running_runs(db: Database) -> None:
    registry = InMemoryRunRegistry()
    leases = LeaseRepository(db)

    async def scenario() -> None:
        source = queue_manager(db, registry, cancel_wait_seconds=0.1)
        source.start_task(Run("on-worker", "compat.gate", {}))
        (claimed,) = leases.claim("w1", ["compat.gate"])
        target = InMemoryTaskManager(registry, compat_handlers)
        # Nobody stops the task within the timeout: it is reported as still running.
        report = await rollback_to_in_memory(source, target, running="cancel", timeout=0.2)
        assert report.cancelled == ["on-worker"]
        assert report.still_running == ["on-worker"]
        assert TaskRepository(db).get(claimed.task_id).cancel_requested
        leases.mark_cancelled(claimed.lease)  # its worker notices and stops
        await source.wait_all(timeout=30)
        await source.close()

    asyncio.run(scenario())
    run = registry.get_run("on-worker")
    assert run is not None
    assert run.status is RunStatus.CANCELLED
