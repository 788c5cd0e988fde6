"""InMemoryTaskManager's own edges (the shared behaviour is in test_compatibility.py), and
the queue manager's sync loop riding out a database error."""

from __future__ import annotations

import asyncio
import logging

import pytest
from sqlalchemy import text

from queue_core.database import Database
from queue_core.repositories import LeaseRepository
from tests.integration.handlers import compat_handlers
from workers.integration import (
    InMemoryRunRegistry,
    InMemoryTaskManager,
    QueueTaskManager,
    Run,
    RunStatus,
)


def test_start_task_needs_a_running_loop_and_closes_the_coroutine() -> None:
    manager = InMemoryTaskManager(InMemoryRunRegistry(), compat_handlers)
    coro = compat_handlers.coroutine_for("compat.echo", {})
    with pytest.raises(RuntimeError, match="event loop"):
        manager.start_task(Run("r", "compat.echo", {}), coro)
    assert coro.cr_frame is None  # closed: no "never awaited" warning later
    assert manager.get_active_task_count() == 0


def test_start_task_refuses_what_is_not_a_coroutine() -> None:
    async def scenario() -> None:
        manager = InMemoryTaskManager(InMemoryRunRegistry(), compat_handlers)
        with pytest.raises(TypeError, match="needs a coroutine"):
            manager.start_task(Run("r", "compat.echo", {}), object())

    asyncio.run(scenario())


def test_a_run_already_in_the_registry_is_updated_not_added_twice() -> None:
    registry = InMemoryRunRegistry()
    registry.add_run(Run("r", "compat.echo", {}))

    async def scenario() -> None:
        manager = InMemoryTaskManager(registry, compat_handlers)
        manager.start_task(Run("r", "compat.echo", {}))
        await manager.wait_all()

    asyncio.run(scenario())
    assert registry.statuses("r") == [RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.COMPLETED]
    with pytest.raises(KeyError):
        registry.update_run(Run("never-added", "compat.echo"))


def test_the_sync_loop_rides_out_a_database_error(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    db = Database(sqlite_url)
    registry = InMemoryRunRegistry()

    async def scenario() -> None:
        manager = QueueTaskManager(
            registry, db, compat_handlers, sync_min_interval=0.01, sync_max_interval=0.05
        )
        manager.start_task(Run("r", "compat.echo", {}))
        (claimed,) = LeaseRepository(db).claim("w", ["compat.echo"])
        LeaseRepository(db).complete(claimed.lease)
        with db.engine.begin() as conn:  # the table goes away under the loop
            conn.execute(text("ALTER TABLE task_queue RENAME TO task_queue_away"))
        with pytest.raises(asyncio.TimeoutError):
            await manager.wait_all(timeout=0.5)
        with db.engine.begin() as conn:
            conn.execute(text("ALTER TABLE task_queue_away RENAME TO task_queue"))
        await manager.wait_all(timeout=30)
        await manager.close()

    with caplog.at_level(logging.WARNING, "prismq.queue.integration"):
        asyncio.run(scenario())
    db.dispose()
    assert "run sync: cannot read the queue" in caplog.text
    stored = registry.get_run("r")
    assert stored is not None
    assert stored.status is RunStatus.COMPLETED
