"""Registering handlers: names, signatures, sync and async, duplicates."""

from __future__ import annotations

import functools
from typing import Any

import pytest

import workers
from workers import DuplicateHandler, HandlerError, PermanentError, Registry, TaskContext, task


def test_public_names_match_the_contract() -> None:
    from workers import PermanentError as P
    from workers import TaskContext as C
    from workers import task as t

    assert issubclass(P, Exception)
    assert callable(t)
    assert C is TaskContext
    assert {"task", "TaskContext", "PermanentError", "Worker", "WorkerConfig"} <= set(
        workers.__all__
    )


def test_decorator_registers_and_returns_the_function() -> None:
    registry = Registry()

    @task("x.one", registry=registry)
    def one(payload: dict[str, Any]) -> int:
        return 1

    @registry.task("x.two")
    async def two(payload: dict[str, Any], ctx: TaskContext) -> int:
        return 2

    assert one({}) == 1
    assert registry.names() == ["x.one", "x.two"]
    assert "x.one" in registry
    assert len(registry) == 2
    first, second = registry.get("x.one"), registry.get("x.two")
    assert (first.is_async, first.takes_context) == (False, False)
    assert (second.is_async, second.takes_context) == (True, True)
    assert first.origin.endswith("one")
    assert {h.name for h in registry} == {"x.one", "x.two"}
    assert registry.has_sync_handlers
    registry.unregister("x.one")
    assert not registry.has_sync_handlers


def test_two_handlers_for_one_name_is_an_error() -> None:
    registry = Registry()
    registry.register("dup", lambda payload: 1)
    with pytest.raises(DuplicateHandler, match="already has a handler"):
        registry.register("dup", lambda payload: 2)


def test_running_the_same_definition_again_is_not_a_duplicate() -> None:
    registry = Registry()

    def handler(payload: dict[str, Any]) -> None:
        return None

    registry.register("same", handler)
    registry.register("same", handler)  # e.g. the module was reloaded
    assert registry.names() == ["same"]


def test_default_registry_is_what_task_fills() -> None:
    @task("tests.registry.default-check")
    def handler(payload: dict[str, Any]) -> None:
        return None

    try:
        assert workers.default_registry.get("tests.registry.default-check").func is handler
    finally:
        workers.default_registry.unregister("tests.registry.default-check")


@pytest.mark.parametrize("name", ["", " bad", ".starts-with-dot", "x" * 201, "spaces in"])
def test_bad_task_types_are_refused(name: str) -> None:
    with pytest.raises(HandlerError):
        Registry().register(name, lambda payload: None)


def test_signatures() -> None:
    registry = Registry()

    with pytest.raises(HandlerError, match="must accept the payload"):
        registry.register("none", lambda: None)
    with pytest.raises(HandlerError, match="also requires"):
        registry.register("three", lambda payload, ctx, extra: None)
    with pytest.raises(HandlerError, match="not callable"):
        registry.register("value", 42)  # type: ignore[arg-type]

    assert registry.register("varargs", lambda *args: None).takes_context
    assert registry.register("default", lambda payload, ctx=None, more=1: None).takes_context
    assert not registry.register("kwonly", lambda payload, *, ctx=None: None).takes_context

    async def coro(payload: dict[str, Any], ctx: TaskContext) -> None:
        return None

    partial = registry.register("partial", functools.partial(coro))
    assert partial.is_async
    assert partial.takes_context

    class Callable:
        async def __call__(self, payload: dict[str, Any]) -> None:
            return None

    assert registry.register("callable", Callable()).is_async
    assert not registry.register("builtin", print).is_async


def test_permanent_error_is_an_exception() -> None:
    with pytest.raises(PermanentError):
        raise PermanentError("no")


def test_context_flags_and_sleep() -> None:
    ctx = TaskContext(task_id=7, attempt=2, worker_id="w", task_type="t", max_attempts=2)
    assert (ctx.task_id, ctx.attempt, ctx.worker_id) == (7, 2, "w")
    assert ctx.is_last_attempt
    assert not (ctx.cancel_requested)
    assert not (ctx.lease_lost)
    assert not (ctx.timed_out)
    assert not (ctx.should_stop)
    assert ctx.sleep(0.01) is True
    ctx.logger.info("a plain logger works when no worker supplies one")
    ctx._request_cancel()
    assert ctx.cancel_requested
    assert ctx.should_stop
    assert ctx.sleep(5) is False  # wakes at once
    other = TaskContext(task_id=8)
    other._lose_lease()
    assert other.lease_lost
    assert other.should_stop
    late = TaskContext(task_id=9)
    late._time_out()
    assert late.timed_out
    assert late.should_stop
    assert "task_id=9" in repr(late)
