"""The old BackgroundTaskManager's observable behaviour, reproduced by both managers.

Every test runs on InMemoryTaskManager (the old behaviour) and on QueueTaskManager with
embedded worker slots, on SQLite and PostgreSQL. Callers hand over coroutines the old way;
the queue manager closes them and runs the module's registered handler instead.
"""

from __future__ import annotations

import asyncio
import inspect
from pathlib import Path

import pytest

from tests.integration.handlers import started_count
from tests.integration.harness import (
    FLAVOURS,
    SLOTS,
    WAIT_SECONDS,
    Flavour,
    is_progression,
    make_flavour,
    running_manager,
    start_old_style,
    status_of,
    until,
)
from workers.integration import HandlerNotRegistered, InMemoryRunRegistry, Run, RunStatus


@pytest.fixture(params=FLAVOURS)
def flavour(request: pytest.FixtureRequest, tmp_path: Path) -> Flavour:
    return make_flavour(str(request.param), request, tmp_path)


def gate_run(run_id: str, tmp_path: Path) -> Run:
    return Run(
        run_id,
        "compat.gate",
        {"gate": str(tmp_path / f"{run_id}.gate"), "marker": str(tmp_path / f"{run_id}.marker")},
    )


def open_gate(run: Run) -> None:
    Path(run.parameters["gate"]).touch()


def test_a_run_goes_queued_running_completed(flavour: Flavour, tmp_path: Path) -> None:
    registry = InMemoryRunRegistry()

    async def scenario() -> None:
        async with running_manager(flavour, registry) as manager:
            run = gate_run("run-1", tmp_path)
            returned = start_old_style(manager, run)
            assert returned == "run-1"
            assert not inspect.isawaitable(returned)
            assert status_of(registry, "run-1") is RunStatus.QUEUED
            assert manager.is_task_active("run-1")
            await until(lambda: status_of(registry, "run-1") is RunStatus.RUNNING)
            open_gate(run)
            await manager.wait_all(timeout=WAIT_SECONDS)

    asyncio.run(scenario())
    assert registry.statuses("run-1") == [RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.COMPLETED]
    run = registry.get_run("run-1")
    assert run is not None
    assert (run.exit_code, run.error_message) == (0, None)
    assert run.started_at is not None
    assert run.completed_at is not None
    assert run.started_at <= run.completed_at
    assert started_count(tmp_path / "run-1.marker") == 1


def test_a_failing_run_ends_failed_with_its_error(flavour: Flavour, tmp_path: Path) -> None:
    registry = InMemoryRunRegistry()

    async def scenario() -> None:
        async with running_manager(flavour, registry) as manager:
            start_old_style(manager, Run("bad", "compat.fail", {"message": "boom-42"}))
            await manager.wait_all(timeout=WAIT_SECONDS)
            assert not manager.is_task_active("bad")

    asyncio.run(scenario())
    run = registry.get_run("bad")
    assert run is not None
    assert run.status is RunStatus.FAILED
    assert "boom-42" in (run.error_message or "")
    assert run.exit_code != 0
    assert is_progression(registry.statuses("bad"), RunStatus.FAILED)


def test_cancel_of_a_queued_run_stops_it_before_it_starts(flavour: Flavour, tmp_path: Path) -> None:
    registry = InMemoryRunRegistry()
    blockers = [gate_run(f"blocker-{i}", tmp_path) for i in range(SLOTS)]
    target = Run("target", "compat.echo", {"marker": str(tmp_path / "target.marker")})

    async def scenario() -> None:
        async with running_manager(flavour, registry) as manager:
            for blocker in blockers:  # every worker slot busy: the target must wait
                start_old_style(manager, blocker)
            await until(
                lambda: all(status_of(registry, b.run_id) is RunStatus.RUNNING for b in blockers)
            )
            start_old_style(manager, target)
            assert await manager.cancel_task("target") is True
            assert status_of(registry, "target") is RunStatus.CANCELLED
            assert not manager.is_task_active("target")
            assert await manager.cancel_task("target") is False
            for blocker in blockers:
                open_gate(blocker)
            await manager.wait_all(timeout=WAIT_SECONDS)

    asyncio.run(scenario())
    assert registry.statuses("target") == [RunStatus.QUEUED, RunStatus.CANCELLED]
    assert started_count(tmp_path / "target.marker") == 0
    assert all(status_of(registry, b.run_id) is RunStatus.COMPLETED for b in blockers)


def test_cancel_of_a_running_run_interrupts_it(flavour: Flavour, tmp_path: Path) -> None:
    registry = InMemoryRunRegistry()
    run = gate_run("run-1", tmp_path)

    async def scenario() -> None:
        async with running_manager(flavour, registry) as manager:
            start_old_style(manager, run)
            await until(lambda: status_of(registry, "run-1") is RunStatus.RUNNING)
            assert await manager.cancel_task("run-1") is True
            assert status_of(registry, "run-1") is RunStatus.CANCELLED
            assert not manager.is_task_active("run-1")
            assert manager.get_active_task_count() == 0
            assert await manager.cancel_task("run-1") is False
            await manager.wait_all(timeout=WAIT_SECONDS)

    asyncio.run(scenario())
    assert registry.statuses("run-1") == [RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.CANCELLED]
    assert started_count(tmp_path / "run-1.marker") == 1


def test_cancel_of_an_unknown_or_finished_run_is_false(flavour: Flavour, tmp_path: Path) -> None:
    registry = InMemoryRunRegistry()

    async def scenario() -> None:
        async with running_manager(flavour, registry) as manager:
            assert await manager.cancel_task("no-such-run") is False
            start_old_style(manager, Run("quick", "compat.echo", {}))
            await manager.wait_all(timeout=WAIT_SECONDS)
            assert await manager.cancel_task("quick") is False

    asyncio.run(scenario())
    assert status_of(registry, "quick") is RunStatus.COMPLETED


def test_active_counts_follow_the_runs(flavour: Flavour, tmp_path: Path) -> None:
    registry = InMemoryRunRegistry()
    runs = [gate_run(f"run-{i}", tmp_path) for i in range(3)]

    async def scenario() -> None:
        async with running_manager(flavour, registry) as manager:
            assert manager.get_active_task_count() == 0
            for run in runs:
                start_old_style(manager, run)
            assert manager.get_active_task_count() == 3
            assert sorted(manager.get_active_task_ids()) == ["run-0", "run-1", "run-2"]
            assert all(manager.is_task_active(run.run_id) for run in runs)
            assert not manager.is_task_active("run-9")
            await until(lambda: status_of(registry, "run-0") is RunStatus.RUNNING)
            open_gate(runs[0])
            await until(lambda: not manager.is_task_active("run-0"))
            assert sorted(manager.get_active_task_ids()) == ["run-1", "run-2"]
            for run in runs[1:]:
                open_gate(run)
            await manager.wait_all(timeout=WAIT_SECONDS)
            assert manager.get_active_task_count() == 0
            assert manager.get_active_task_ids() == []
            assert not any(manager.is_task_active(run.run_id) for run in runs)

    asyncio.run(scenario())


def test_wait_all_waits_for_many_concurrent_runs(flavour: Flavour, tmp_path: Path) -> None:
    registry = InMemoryRunRegistry()
    runs = [Run(f"sleep-{i}", "compat.sleep", {"seconds": 0.05 * (i % 4)}) for i in range(6)] + [
        Run(f"echo-{i}", "compat.echo", {"i": i}) for i in range(4)
    ]
    runs.append(Run("fail-0", "compat.fail", {"message": "expected"}))

    async def scenario() -> None:
        async with running_manager(flavour, registry) as manager:
            for run in runs:
                start_old_style(manager, run)
            assert manager.get_active_task_count() == len(runs)
            await manager.wait_all(timeout=WAIT_SECONDS)
            assert manager.get_active_task_count() == 0
            await asyncio.wait_for(manager.wait_all(), 5)  # nothing left: returns at once

    asyncio.run(scenario())
    expected = {
        run.run_id: RunStatus.FAILED if run.module_id == "compat.fail" else RunStatus.COMPLETED
        for run in runs
    }
    assert {run.run_id: status_of(registry, run.run_id) for run in runs} == expected
    for run in runs:
        assert is_progression(registry.statuses(run.run_id), expected[run.run_id])


def test_wait_all_honours_its_timeout(flavour: Flavour, tmp_path: Path) -> None:
    registry = InMemoryRunRegistry()
    run = gate_run("slow", tmp_path)

    async def scenario() -> None:
        async with running_manager(flavour, registry) as manager:
            start_old_style(manager, run)
            with pytest.raises(asyncio.TimeoutError):
                await manager.wait_all(timeout=0.3)
            assert manager.is_task_active("slow")
            open_gate(run)
            await manager.wait_all(timeout=WAIT_SECONDS)

    asyncio.run(scenario())
    assert status_of(registry, "slow") is RunStatus.COMPLETED


def test_starting_an_active_run_again_does_not_double_it(flavour: Flavour, tmp_path: Path) -> None:
    registry = InMemoryRunRegistry()
    run = gate_run("once", tmp_path)

    async def scenario() -> None:
        async with running_manager(flavour, registry) as manager:
            start_old_style(manager, run)
            await until(lambda: status_of(registry, "once") is RunStatus.RUNNING)
            start_old_style(manager, gate_run("once", tmp_path))
            assert manager.get_active_task_count() == 1
            open_gate(run)
            await manager.wait_all(timeout=WAIT_SECONDS)

    asyncio.run(scenario())
    assert started_count(tmp_path / "once.marker") == 1


def test_a_module_without_handler_is_a_clear_error(flavour: Flavour) -> None:
    registry = InMemoryRunRegistry()

    async def scenario() -> None:
        async with running_manager(flavour, registry) as manager:
            with pytest.raises(HandlerNotRegistered, match=r"compat\.missing"):
                manager.start_task(Run("r", "compat.missing", {}))
            assert manager.get_active_task_count() == 0

    asyncio.run(scenario())
    assert registry.get_run("r") is None
