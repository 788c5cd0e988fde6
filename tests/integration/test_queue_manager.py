"""QueueTaskManager on its own: enqueue, the registry sync, cancel, track. Tasks are driven by
hand with LeaseRepository here, so each transition is exact; test_compatibility.py runs them
on real worker slots."""

from __future__ import annotations

import asyncio
import gc
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, event

from queue_core.database import Database
from queue_core.errors import IdempotencyConflict
from queue_core.repositories import LeaseRepository, TaskRepository
from queue_core.repositories._common import TASKS
from queue_core.settings import QueueSettings
from queue_core.states import TaskStatus
from tests.integration.handlers import compat_handlers
from workers.integration import (
    HandlerNotRegistered,
    InMemoryRunRegistry,
    QueueTaskManager,
    Run,
    RunStatus,
)

FAST_SYNC = {"sync_min_interval": 0.01, "sync_max_interval": 0.1}


@pytest.fixture
def qdb(db_url: str) -> Iterator[Database]:
    database = Database(db_url, QueueSettings(retry_base_seconds=0.0))
    yield database
    database.dispose()


def make_manager(
    db: Database, registry: InMemoryRunRegistry | None = None, **options: Any
) -> QueueTaskManager:
    return QueueTaskManager(
        registry if registry is not None else InMemoryRunRegistry(),
        db,
        compat_handlers,
        **{**FAST_SYNC, **options},
    )


def claim_one(db: Database, worker_id: str = "hand") -> Any:
    (claimed,) = LeaseRepository(db).claim(worker_id, ["compat.echo", "compat.gate"])
    return claimed


def test_start_task_enqueues_one_task_keyed_by_run_id(qdb: Database) -> None:
    async def scenario() -> None:
        manager = make_manager(qdb, priority=7, max_attempts=3)
        run = Run("run-1", "compat.echo", {"n": 1})
        assert manager.start_task(run) == "run-1"
        (task,) = TaskRepository(qdb).list()
        assert (task.type, task.payload, task.idempotency_key) == ("compat.echo", {"n": 1}, "run-1")
        assert (task.priority, task.max_attempts, task.status) == (7, 3, TaskStatus.QUEUED)
        stored = manager.registry.get_run("run-1")
        assert stored is not None
        assert (stored.status, stored.task_id) == (RunStatus.QUEUED, task.task_id)
        assert manager.is_task_active("run-1")
        assert manager.get_active_task_ids() == ["run-1"]
        await manager.close()

    asyncio.run(scenario())


def test_a_retried_start_task_never_doubles_work(qdb: Database) -> None:
    async def scenario() -> None:
        first = make_manager(qdb)
        first.start_task(Run("run-1", "compat.echo", {"n": 1}))
        first.start_task(Run("run-1", "compat.echo", {"n": 1}))
        await first.close()
        # After a restart, with a fresh registry: the same run finds the same task.
        second = make_manager(qdb)
        second.start_task(Run("run-1", "compat.echo", {"n": 1}))
        assert len(TaskRepository(qdb).list()) == 1
        # Once it has completed, starting it again reports the outcome instead of rerunning.
        claimed = claim_one(qdb)
        LeaseRepository(qdb).complete(claimed.lease, {"ok": True})
        await second.wait_all(timeout=10)
        third = make_manager(qdb)
        assert third.start_task(Run("run-1", "compat.echo", {"n": 1})) == "run-1"
        assert third.get_active_task_count() == 0
        stored = third.registry.get_run("run-1")
        assert stored is not None
        assert stored.status is RunStatus.COMPLETED
        assert stored.exit_code == 0
        assert len(TaskRepository(qdb).list()) == 1
        await second.close()
        await third.close()

    asyncio.run(scenario())


def test_one_run_id_with_other_parameters_is_a_conflict(qdb: Database) -> None:
    async def scenario() -> None:
        manager = make_manager(qdb)
        manager.start_task(Run("run-1", "compat.echo", {"n": 1}))
        with pytest.raises(IdempotencyConflict):
            manager.start_task(Run("run-1", "compat.echo", {"n": 2}))
        await manager.close()

    asyncio.run(scenario())


def test_the_callers_coroutine_is_closed_not_leaked(qdb: Database) -> None:
    async def old_style_work(n: int) -> int:
        return n

    async def scenario() -> None:
        manager = make_manager(qdb)
        manager.start_task(Run("run-1", "compat.echo", {"n": 1}), old_style_work(1))
        await manager.close()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        asyncio.run(scenario())
        gc.collect()
        assert not [w for w in caught if "never awaited" in str(w.message)]
        # The check above can fail: an abandoned coroutine does warn.
        old_style_work(2)
        gc.collect()
        assert [w for w in caught if "never awaited" in str(w.message)]


def test_a_module_without_handler_is_refused_clearly(qdb: Database) -> None:
    async def work() -> None:
        return None

    async def scenario() -> None:
        manager = make_manager(qdb)
        with pytest.raises(HandlerNotRegistered, match=r"register_module\('nope.missing'\)"):
            manager.start_task(Run("run-1", "nope.missing", {}), work())
        assert TaskRepository(qdb).list() == []
        assert manager.registry.get_run("run-1") is None
        # A web process that only enqueues may leave handlers to the workers.
        lenient = make_manager(qdb, require_handler=False)
        lenient.start_task(Run("run-2", "nope.missing", {}))
        assert [t.type for t in TaskRepository(qdb).list()] == ["nope.missing"]
        await manager.close()
        await lenient.close()

    asyncio.run(scenario())


def test_the_registry_follows_each_transition(qdb: Database) -> None:
    async def scenario() -> None:
        registry = InMemoryRunRegistry()
        manager = make_manager(qdb, registry, max_attempts=2)
        manager.start_task(Run("ok", "compat.echo", {}))
        manager.start_task(Run("bad", "compat.gate", {}))
        leases = LeaseRepository(qdb)
        ok = claim_one(qdb)
        await manager.sync_now()
        assert registry.statuses("ok") == [RunStatus.QUEUED, RunStatus.RUNNING]
        leases.complete(ok.lease, {"done": 1})
        await manager.sync_now()
        done = registry.get_run("ok")
        assert done is not None
        assert (done.status, done.exit_code) == (RunStatus.COMPLETED, 0)
        assert done.started_at is not None
        assert done.completed_at is not None

        bad = claim_one(qdb)
        leases.fail(bad.lease, "first error")  # retry pending: the run is still under way
        await manager.sync_now()
        waiting = registry.get_run("bad")
        assert waiting is not None
        assert (waiting.status, waiting.error_message) == (RunStatus.RUNNING, "first error")
        bad = claim_one(qdb)
        leases.fail(bad.lease, "second error")
        await manager.wait_all(timeout=10)
        assert registry.statuses("bad") == [RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.FAILED]
        failed = registry.get_run("bad")
        assert failed is not None
        assert failed.error_message == "second error"
        assert manager.get_active_task_count() == 0
        await manager.close()

    asyncio.run(scenario())


def test_cancel_of_a_queued_run_is_immediate(qdb: Database) -> None:
    async def scenario() -> None:
        manager = make_manager(qdb)
        manager.start_task(Run("run-1", "compat.echo", {}))
        assert await manager.cancel_task("run-1") is True
        stored = manager.registry.get_run("run-1")
        assert stored is not None
        assert stored.status is RunStatus.CANCELLED
        (task,) = TaskRepository(qdb).list()
        assert task.status is TaskStatus.CANCELLED
        assert not manager.is_task_active("run-1")
        assert await manager.cancel_task("run-1") is False
        assert await manager.cancel_task("never-started") is False
        await manager.close()

    asyncio.run(scenario())


def test_cancel_of_a_running_run_waits_for_its_worker(qdb: Database) -> None:
    async def scenario() -> None:
        manager = make_manager(qdb, cancel_wait_seconds=30)
        manager.start_task(Run("run-1", "compat.gate", {}))
        claimed = claim_one(qdb)
        leases = LeaseRepository(qdb)

        def worker_notices_and_stops() -> None:
            while not leases.is_cancel_requested(claimed.lease):
                pass
            leases.mark_cancelled(claimed.lease)

        stopper = asyncio.create_task(asyncio.to_thread(worker_notices_and_stops))
        assert await asyncio.wait_for(manager.cancel_task("run-1"), 30) is True
        stored = manager.registry.get_run("run-1")
        assert stored is not None
        assert stored.status is RunStatus.CANCELLED
        await stopper
        await manager.close()

    asyncio.run(scenario())


def test_cancel_of_a_running_run_gives_up_waiting_but_stays_requested(
    qdb: Database, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        manager = make_manager(qdb, cancel_wait_seconds=0.2)
        manager.start_task(Run("run-1", "compat.gate", {}))
        claimed = claim_one(qdb)
        await manager.sync_now()
        assert await manager.cancel_task("run-1") is True
        assert manager.is_task_active("run-1")
        assert TaskRepository(qdb).get(claimed.task_id).cancel_requested
        LeaseRepository(qdb).mark_cancelled(claimed.lease)
        await manager.wait_all(timeout=10)
        stored = manager.registry.get_run("run-1")
        assert stored is not None
        assert stored.status is RunStatus.CANCELLED
        await manager.close()

    with caplog.at_level(logging.WARNING, "prismq.queue.integration"):
        asyncio.run(scenario())
    assert "has not stopped it" in caplog.text


def test_a_restarted_process_tracks_runs_it_did_not_start(qdb: Database) -> None:
    async def scenario() -> None:
        before = make_manager(qdb)
        before.start_task(Run("run-1", "compat.echo", {"n": 1}))
        await before.close()
        registry = InMemoryRunRegistry()  # the restarted process lost its memory
        after = make_manager(qdb, registry)
        assert await after.track(["run-1", "unknown"]) == ["run-1"]
        rebuilt = registry.get_run("run-1")
        assert rebuilt is not None
        assert (rebuilt.module_id, rebuilt.parameters) == ("compat.echo", {"n": 1})
        LeaseRepository(qdb).complete(claim_one(qdb).lease)
        await after.wait_all(timeout=10)
        done = registry.get_run("run-1")
        assert done is not None
        assert done.status is RunStatus.COMPLETED
        # cancel_task also finds runs it never tracked, by run_id.
        other = make_manager(qdb)
        assert await other.cancel_task("run-1") is False
        await after.close()
        await other.close()

    asyncio.run(scenario())


def test_a_run_whose_task_vanished_fails(qdb: Database) -> None:
    async def scenario() -> None:
        manager = make_manager(qdb)
        manager.start_task(Run("run-1", "compat.echo", {}))
        with qdb.write() as conn:
            conn.execute(delete(TASKS))
        await manager.wait_all(timeout=10)
        stored = manager.registry.get_run("run-1")
        assert stored is not None
        assert stored.status is RunStatus.FAILED
        assert "no longer exists" in (stored.error_message or "")
        await manager.close()

    asyncio.run(scenario())


def test_wait_all_backs_off_instead_of_busy_looping(qdb: Database) -> None:
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "task_queue" in statement and statement.lstrip().upper().startswith("SELECT"):
            statements.append(statement)

    async def scenario() -> None:
        manager = make_manager(qdb, sync_min_interval=0.05, sync_max_interval=0.4)
        manager.start_task(Run("run-1", "compat.echo", {}))
        event.listen(qdb.engine, "before_cursor_execute", count)
        try:
            with pytest.raises(asyncio.TimeoutError):
                await manager.wait_all(timeout=1.5)
        finally:
            event.remove(qdb.engine, "before_cursor_execute", count)
        await manager.close()

    asyncio.run(scenario())
    # 0.05 + 0.1 + 0.2 + 0.4 + 0.4 + 0.4 reaches 1.5 s in 6 polls; a busy loop makes hundreds.
    assert 2 <= len(statements) <= 10


def test_the_manager_needs_an_event_loop_only_to_sync(qdb: Database, tmp_path: Path) -> None:
    manager = make_manager(qdb)
    assert manager.start_task(Run("run-1", "compat.echo", {})) == "run-1"

    async def scenario() -> None:
        LeaseRepository(qdb).complete(claim_one(qdb).lease)
        await manager.wait_all(timeout=10)
        await manager.close()

    asyncio.run(scenario())
    stored = manager.registry.get_run("run-1")
    assert stored is not None
    assert stored.status is RunStatus.COMPLETED


def test_close_stops_the_sync_loop_even_right_after_a_wake_up(qdb: Database) -> None:
    """asyncio.wait_for before 3.12 swallows a cancel that meets a finished wait: a sync loop
    woken and closed in the same loop iteration then slept forever, and close() hung."""

    async def scenario() -> None:
        for i in range(20):
            manager = make_manager(qdb)
            manager.start_task(Run(f"run-{i}", "compat.echo", {}))
            await asyncio.sleep(0)
            manager.forget(f"run-{i}")
            await manager.wait_all()  # wakes the loop; nothing left to wait for
            await asyncio.wait_for(manager.close(), 5)

    asyncio.run(scenario())
