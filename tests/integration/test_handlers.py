"""Module handlers: registration, the clear error, the mirror into the worker registry, and
the status mapping between runs and tasks."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from queue_core.states import TaskStatus
from workers.errors import DuplicateHandler
from workers.integration import (
    HandlerNotRegistered,
    ModuleHandlers,
    RunStatus,
    discard_awaitable,
    module_handlers,
    run_status_for,
    task_status_for,
)
from workers.registry import Registry, default_registry


def test_registered_handlers_build_the_coroutine_the_old_callers_passed() -> None:
    handlers = ModuleHandlers()

    @handlers.register("report.build")
    async def build(parameters: dict[str, Any]) -> int:
        return int(parameters["n"]) * 2

    parameters = {"n": 21}
    coro = handlers.coroutine_for("report.build", parameters)
    assert asyncio.run(coro) == 42
    assert "report.build" in handlers
    assert handlers.module_ids() == ["report.build"]
    assert list(handlers) == ["report.build"]
    assert len(handlers) == 1


def test_a_missing_handler_names_the_module_and_the_fix() -> None:
    handlers = ModuleHandlers()
    handlers.register("known.one", _noop)
    with pytest.raises(HandlerNotRegistered) as caught:
        handlers.get("unknown.module")
    message = str(caught.value)
    assert "'unknown.module'" in message
    assert "'known.one'" in message
    assert "@register_module('unknown.module')" in message
    assert caught.value.module_id == "unknown.module"


def test_handlers_must_be_async_and_unique() -> None:
    handlers = ModuleHandlers()

    def sync_handler(parameters: dict[str, Any]) -> None:
        return None

    with pytest.raises(TypeError, match="async def"):
        handlers.register("x.sync", sync_handler)  # type: ignore[type-var]
    handlers.register("x.one", _noop)
    handlers.register("x.one", _noop)  # the same function again is harmless

    async def other(parameters: dict[str, Any]) -> None:
        return None

    with pytest.raises(ValueError, match="already has a handler"):
        handlers.register("x.one", other)


def test_each_module_is_also_a_worker_task_type() -> None:
    registry = Registry()
    handlers = ModuleHandlers(registry)
    handlers.register("mirror.one", _noop)
    assert registry.names() == ["mirror.one"]
    assert registry.get("mirror.one").is_async
    handlers.unregister("mirror.one")
    assert registry.names() == []
    assert "mirror.one" not in handlers
    # The worker registry's own rules hold: a task type has one handler.
    registry.register("taken", _other_noop)
    with pytest.raises(DuplicateHandler):
        handlers.register("taken", _noop)
    assert "taken" not in handlers


def test_the_default_module_registry_feeds_the_default_worker_registry() -> None:
    import tests.integration.handlers  # noqa: F401 - registers the compat.* modules

    assert module_handlers.worker_registry is default_registry
    assert "compat.gate" in default_registry


def test_a_handler_may_take_the_worker_context() -> None:
    registry = Registry()
    handlers = ModuleHandlers(registry)

    @handlers.register("ctx.optional")
    async def with_context(parameters: dict[str, Any], ctx: Any = None) -> Any:
        return ctx

    assert registry.get("ctx.optional").takes_context
    assert asyncio.run(handlers.coroutine_for("ctx.optional", {})) is None


def test_discarding_closes_coroutines_and_cancels_futures() -> None:
    async def scenario() -> None:
        coro = _noop({})
        discard_awaitable(coro)
        assert coro.cr_frame is None  # closed
        future = asyncio.get_running_loop().create_future()
        discard_awaitable(future)
        assert future.cancelled()
        discard_awaitable(None)

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("task_status", "attempts", "run_status"),
    [
        (TaskStatus.QUEUED, 0, RunStatus.QUEUED),
        (TaskStatus.QUEUED, 2, RunStatus.RUNNING),  # waiting for a retry
        (TaskStatus.LEASED, 1, RunStatus.RUNNING),
        (TaskStatus.COMPLETED, 1, RunStatus.COMPLETED),
        (TaskStatus.FAILED, 5, RunStatus.FAILED),
        (TaskStatus.CANCELLED, 0, RunStatus.CANCELLED),
    ],
)
def test_task_states_map_to_run_statuses(
    task_status: TaskStatus, attempts: int, run_status: RunStatus
) -> None:
    assert run_status_for(task_status, attempts) is run_status
    assert run_status_for(task_status.value, attempts) is run_status


def test_run_statuses_map_back_to_task_states() -> None:
    assert {s: task_status_for(s) for s in RunStatus} == {
        RunStatus.QUEUED: TaskStatus.QUEUED,
        RunStatus.RUNNING: TaskStatus.LEASED,
        RunStatus.COMPLETED: TaskStatus.COMPLETED,
        RunStatus.FAILED: TaskStatus.FAILED,
        RunStatus.CANCELLED: TaskStatus.CANCELLED,
    }
    for status in RunStatus:
        assert run_status_for(task_status_for(status), 1 if status is RunStatus.RUNNING else 0) is (
            status
        )
    assert [s.value for s in RunStatus] == ["queued", "running", "completed", "failed", "cancelled"]
    assert str(RunStatus.RUNNING) == "running"


async def _noop(parameters: dict[str, Any]) -> None:
    return None


async def _other_noop(parameters: dict[str, Any]) -> None:
    return None
