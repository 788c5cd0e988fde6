"""The executor: reusable threads for sync handlers, one loop for async ones, outcomes."""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from typing import Any

import pytest

from workers import PermanentError, Registry, TaskContext
from workers.execution import Execution, HandlerExecutor, Outcome, describe_error

LIMIT = 1024


def _run(
    executor: HandlerExecutor, func: Any, payload: Any = None, *, ctx: TaskContext | None = None
) -> tuple[Execution, queue.SimpleQueue[Execution]]:
    registry = Registry()
    handler = registry.register("t", func)
    done: queue.SimpleQueue[Execution] = queue.SimpleQueue()
    execution = executor.start(handler, payload or {}, ctx or TaskContext(task_id=1), done.put)
    return execution, done


@pytest.fixture
def executor() -> Any:
    ex = HandlerExecutor(2, result_limit_bytes=LIMIT)
    yield ex
    ex.close()


def _outcome(executor: HandlerExecutor, func: Any, payload: Any = None) -> Outcome:
    _, done = _run(executor, func, payload)
    outcome = done.get(timeout=5).outcome
    assert outcome is not None
    return outcome


def test_outcomes(executor: HandlerExecutor) -> None:
    ok = _outcome(executor, lambda p, ctx: {"echo": p, "task": ctx.task_id}, {"a": 1})
    assert ok.succeeded
    assert ok.result == {"echo": {"a": 1}, "task": 1}

    def boom(payload: Any) -> None:
        raise RuntimeError("boom")

    failed = _outcome(executor, boom)
    assert (failed.kind, failed.error, failed.permanent) == ("failed", "RuntimeError: boom", False)
    assert isinstance(failed.exception, RuntimeError)

    def permanent(payload: Any) -> None:
        raise PermanentError("never")

    assert _outcome(executor, permanent).permanent

    not_json = _outcome(executor, lambda p: {1, 2})
    assert not_json.kind == "failed"
    assert "not JSON-serialisable" in (not_json.error or "")

    too_big = _outcome(executor, lambda p: "x" * (LIMIT + 1))
    assert "the limit is 1024" in (too_big.error or "")

    async def coro() -> None:
        return None

    awaitable = _outcome(executor, lambda p: coro())
    assert "declare it `async def`" in (awaitable.error or "")

    def exits(payload: Any) -> None:
        raise SystemExit(3)

    assert _outcome(executor, exits).error == "SystemExit: 3"


def test_async_handlers_run_on_one_loop_and_can_be_cancelled(executor: HandlerExecutor) -> None:
    async def echo(payload: Any) -> Any:
        await asyncio.sleep(0)
        return payload

    assert _outcome(executor, echo, {"x": 1}).result == {"x": 1}

    started = threading.Event()

    async def forever(payload: Any) -> None:
        started.set()
        await asyncio.sleep(60)

    execution, done = _run(executor, forever)
    assert started.wait(5)
    executor.interrupt(execution)
    outcome = done.get(timeout=5).outcome
    assert outcome is not None
    assert outcome.kind == "interrupted"


def test_async_handler_stopped_before_it_starts_is_cancelled(executor: HandlerExecutor) -> None:
    async def never(payload: Any) -> None:
        await asyncio.sleep(60)

    ctx = TaskContext(task_id=1)
    ctx._request_cancel()
    _, done = _run(executor, never, ctx=ctx)
    outcome = done.get(timeout=5).outcome
    assert outcome is not None
    assert outcome.kind == "interrupted"


def test_threads_are_reused_not_created_per_task(executor: HandlerExecutor) -> None:
    names = set()
    for _ in range(20):
        _, done = _run(executor, lambda p: threading.current_thread().name)
        outcome = done.get(timeout=5).outcome
        assert outcome is not None
        names.add(outcome.result)
    assert len(names) == 1  # one at a time: the same thread every time


def test_a_retired_thread_is_replaced_and_its_result_ignored(executor: HandlerExecutor) -> None:
    release = threading.Event()

    def stuck(payload: Any) -> str:
        release.wait(10)
        return threading.current_thread().name

    stuck_run, stuck_done = _run(executor, stuck)
    other_run, other_done = _run(executor, stuck)
    time.sleep(0.05)
    assert executor.abandon(stuck_run) is True
    assert stuck_run.retired
    # With one of two threads retired, a new one serves the next task at once.
    quick, quick_done = _run(executor, lambda p: threading.current_thread().name)
    fresh = quick_done.get(timeout=5).outcome
    assert fresh is not None
    release.set()
    first = stuck_done.get(timeout=5).outcome
    second = other_done.get(timeout=5).outcome
    assert first is not None
    assert second is not None
    assert fresh.result not in (first.result, second.result)
    assert executor.abandon(other_run) is False  # finished already: nothing to retire
    assert executor.abandon(quick) is False


def test_abandoning_an_async_handler_cancels_it(executor: HandlerExecutor) -> None:
    async def forever(payload: Any) -> None:
        await asyncio.sleep(60)

    execution, done = _run(executor, forever)
    time.sleep(0.05)
    assert executor.abandon(execution) is True
    assert done.get(timeout=5).outcome is not None


def test_describe_error_cuts_long_messages() -> None:
    assert describe_error(ValueError()) == "ValueError"
    assert len(describe_error(ValueError("x" * 10_000))) == 4000
