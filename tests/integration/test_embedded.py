"""Embedded worker slots and the lifespan helper: start with the app, stop gracefully."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import pytest

from queue_core.database import Database
from queue_core.repositories import TaskRepository, WorkerRepository
from queue_core.states import TaskStatus
from tests.integration.handlers import compat_handlers, started_count
from tests.integration.harness import EMBEDDED_CONFIG, status_of, until
from workers.integration import (
    InMemoryRunRegistry,
    InMemoryTaskManager,
    ModuleHandlers,
    QueueTaskManager,
    Run,
    RunStatus,
    TaskManager,
)
from workers.integration.embedded import EmbeddedWorkers, embedded_workers
from workers.integration.lifespan import task_manager_lifespan


def test_stopping_gives_unfinished_runs_back_to_the_queue(db_url: str, tmp_path: Path) -> None:
    registry = InMemoryRunRegistry()
    marker = tmp_path / "gate.marker"
    gate = tmp_path / "gate"
    run = Run("long", "compat.gate", {"gate": str(gate), "marker": str(marker)})

    async def scenario() -> None:
        db = Database(db_url)
        manager = QueueTaskManager(registry, db, compat_handlers, sync_max_interval=0.2)
        async with embedded_workers(manager, shutdown_grace=0.3, config=EMBEDDED_CONFIG):
            manager.start_task(run)
            await until(lambda: status_of(registry, "long") is RunStatus.RUNNING)
        # The grace period passed with the handler still running: released, attempt refunded.
        task = TaskRepository(db).get(registry.get_run("long").task_id)  # type: ignore[union-attr]
        assert (task.status, task.attempts) == (TaskStatus.QUEUED, 0)
        await manager.sync_now()
        assert status_of(registry, "long") is RunStatus.RUNNING  # still under way for its run
        # The app starts again: the run is picked up and finishes.
        gate.touch()
        async with embedded_workers(manager, config=EMBEDDED_CONFIG):
            await manager.wait_all(timeout=30)
        assert status_of(registry, "long") is RunStatus.COMPLETED
        assert started_count(marker) == 2
        assert all(w.stopped_at_utc is not None for w in WorkerRepository(db).list())
        await manager.close()
        db.dispose()

    asyncio.run(scenario())


def test_embedded_workers_need_module_handlers(db_url: str) -> None:
    db = Database(db_url)
    manager = QueueTaskManager(InMemoryRunRegistry(), db, ModuleHandlers())
    with pytest.raises(ValueError, match="register_module"):
        EmbeddedWorkers(manager)
    db.dispose()


def test_the_lifespan_owns_the_manager_and_the_slots(db_url: str, db: Database) -> None:
    registry = InMemoryRunRegistry()
    created: list[TaskManager] = []

    def create() -> TaskManager:
        manager = QueueTaskManager(
            registry, Database(db_url), compat_handlers, sync_max_interval=0.2, owns_db=True
        )
        created.append(manager)
        return manager

    app = SimpleNamespace(state=SimpleNamespace())
    lifespan = task_manager_lifespan(create, concurrency=1, worker_config=EMBEDDED_CONFIG)

    async def scenario() -> None:
        async with lifespan(app):
            manager: TaskManager = app.state.task_manager
            assert manager is created[0]
            manager.start_task(Run("r1", "compat.echo", {"n": 1}))
            await manager.wait_all(timeout=30)
        assert status_of(registry, "r1") is RunStatus.COMPLETED

    asyncio.run(scenario())
    (worker,) = WorkerRepository(db).list()
    assert worker.concurrency == 1
    assert worker.stopped_at_utc is not None


def test_the_lifespan_without_embedded_slots_only_enqueues(db_url: str, db: Database) -> None:
    registry = InMemoryRunRegistry()
    app = SimpleNamespace(state=SimpleNamespace())
    lifespan = task_manager_lifespan(
        lambda: QueueTaskManager(registry, Database(db_url), compat_handlers, owns_db=True),
        embedded_workers=False,
        state_attribute="runs",
    )

    async def scenario() -> None:
        async with lifespan(app):
            app.state.runs.start_task(Run("r1", "compat.echo", {}))

    asyncio.run(scenario())
    assert [t.status for t in TaskRepository(db).list()] == [TaskStatus.QUEUED]
    assert WorkerRepository(db).list() == []


def test_the_lifespan_lets_in_memory_runs_finish_within_the_grace(tmp_path: Path) -> None:
    registry = InMemoryRunRegistry()
    app = SimpleNamespace(state=SimpleNamespace())
    lifespan = task_manager_lifespan(
        lambda: InMemoryTaskManager(registry, compat_handlers), shutdown_grace=10
    )

    async def scenario() -> None:
        async with lifespan(app):
            app.state.task_manager.start_task(Run("r1", "compat.sleep", {"seconds": 0.2}))

    asyncio.run(scenario())
    assert status_of(registry, "r1") is RunStatus.COMPLETED
