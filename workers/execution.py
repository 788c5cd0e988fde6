"""Running one handler: :class:`Execution` (sync or async) and the event loop for async ones.

A sync handler runs on the calling thread: the executor's slot thread calls
:meth:`Execution.run_sync` itself, so no thread hand-off happens per task. An async handler
runs on the one :class:`AsyncRunner` loop; its slot thread waits for it. Nothing here touches
the database.

A thread cannot be killed. When a sync handler overruns its time limit (or the worker stops
waiting for it at shutdown) its slot thread is *retired* by the executor: a new thread takes
its place, and the old one exits whenever the handler returns, its result discarded. Async
handlers are cancelled instead.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import orjson

from workers.context import TaskContext
from workers.defaults import ERROR_MESSAGE_MAX_CHARS, WORKER_LOGGER
from workers.errors import PermanentError
from workers.registry import Handler

log = logging.getLogger(WORKER_LOGGER)

SUCCEEDED = "succeeded"
FAILED = "failed"
INTERRUPTED = "interrupted"  # an async handler was cancelled (cancel requested, lease lost)
TIMED_OUT = "timed_out"  # the worker stopped waiting: the time limit passed
RELEASED = "released"  # given back unfinished (shutdown), no attempt used
NOT_STARTED = "not_started"  # its cancellation was requested before it started


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended: its handler returned ``result``, raised ``error``, was cancelled
    or timed out, or the worker gave the task back (``kind`` says which)."""

    kind: str
    result: Any = None
    error: str | None = None
    permanent: bool = False
    exception: BaseException | None = None
    duration: float = 0.0

    @property
    def succeeded(self) -> bool:
        return self.kind == SUCCEEDED


def describe_error(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    if len(text) > ERROR_MESSAGE_MAX_CHARS:
        text = text[: ERROR_MESSAGE_MAX_CHARS - 1] + "…"
    return text


def _permanent(error: str, duration: float) -> Outcome:
    # A result that cannot be stored will not become storable on a retry: fail at once.
    return Outcome(FAILED, error=error, permanent=True, duration=duration)


def _checked_result(value: Any, limit_bytes: int, duration: float) -> Outcome:
    if inspect.isawaitable(value):
        if inspect.iscoroutine(value):
            value.close()
        return _permanent("the handler returned an awaitable; declare it `async def`", duration)
    try:
        size = len(orjson.dumps(value))
    except TypeError as exc:
        return _permanent(f"the handler's return value is not JSON-serialisable: {exc}", duration)
    if size > limit_bytes:
        return _permanent(
            f"the handler's return value is {size} bytes of JSON; the limit is {limit_bytes}",
            duration,
        )
    return Outcome(SUCCEEDED, result=value, duration=duration)


def _raised(error: BaseException, duration: float) -> Outcome:
    return Outcome(
        FAILED,
        error=describe_error(error),
        permanent=isinstance(error, PermanentError),
        exception=error,
        duration=duration,
    )


class Execution:
    """One run of one handler; :attr:`outcome` is set once it ends."""

    def __init__(
        self,
        handler: Handler,
        payload: dict[str, Any],
        ctx: TaskContext,
        *,
        result_limit_bytes: int,
    ) -> None:
        self.handler = handler
        self.payload = payload
        self.ctx = ctx
        self.result_limit_bytes = result_limit_bytes
        self.outcome: Outcome | None = None
        self.interrupted = False  # an async handler was asked to stop already
        self._done = threading.Event()
        self._task: asyncio.Task[None] | None = None

    def _args(self) -> tuple[Any, ...]:
        return (self.payload, self.ctx) if self.handler.takes_context else (self.payload,)

    def run_sync(self) -> Outcome:
        """Run a sync handler on this thread."""
        started = time.perf_counter()
        try:
            value = self.handler.func(*self._args())
        except BaseException as exc:  # noqa: BLE001 - a handler's SystemExit is a failure too
            outcome = _raised(exc, time.perf_counter() - started)
        else:
            outcome = _checked_result(value, self.result_limit_bytes, time.perf_counter() - started)
        self._finish(outcome)
        return outcome

    async def run_async(self) -> None:
        started = time.perf_counter()
        try:
            value = await self.handler.func(*self._args())
        except asyncio.CancelledError:
            outcome = Outcome(
                INTERRUPTED, error="cancelled", duration=time.perf_counter() - started
            )
        except BaseException as exc:  # noqa: BLE001
            outcome = _raised(exc, time.perf_counter() - started)
        else:
            outcome = _checked_result(value, self.result_limit_bytes, time.perf_counter() - started)
        self._finish(outcome)

    def _finish(self, outcome: Outcome) -> None:
        if self.outcome is None:
            self.outcome = outcome
        self._done.set()

    def wait(self, timeout: float | None = None) -> Outcome | None:
        self._done.wait(timeout)
        return self.outcome

    @property
    def finished(self) -> bool:
        return self._done.is_set()


class AsyncRunner:
    """One event loop, in a daemon thread started on first use, for every async handler."""

    def __init__(self, name: str = "prismq-async") -> None:
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=self._serve, args=(loop,), name=self._name, daemon=True
                )
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    @staticmethod
    def _serve(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        loop.run_forever()

    def run(self, execution: Execution) -> Outcome:
        """Run an async handler on the loop and wait for it (on the calling slot thread)."""
        self._ensure_loop().call_soon_threadsafe(self._start, execution)
        outcome = execution.wait()
        assert outcome is not None
        return outcome

    def _start(self, execution: Execution) -> None:
        coro: Coroutine[Any, Any, None] = execution.run_async()
        task = asyncio.get_running_loop().create_task(coro)
        execution._task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda _task: self._ensure_finished(execution))
        if execution.ctx.should_stop or execution.interrupted:
            # Stopped before it started: cancel after its first step, inside its try block.
            asyncio.get_running_loop().call_soon(task.cancel)

    @staticmethod
    def _ensure_finished(execution: Execution) -> None:
        if not execution.finished:  # cancelled before its first step ran
            execution._finish(Outcome(INTERRUPTED, error="cancelled"))

    def cancel(self, execution: Execution) -> None:
        execution.interrupted = True
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._cancel, execution)

    @staticmethod
    def _cancel(execution: Execution) -> None:
        if execution._task is not None:
            execution._task.cancel()

    def close(self, timeout: float = 1.0) -> None:
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return

        def shut_down() -> None:
            for task in list(self._tasks):
                task.cancel()
            loop.call_later(0.05, loop.stop)

        loop.call_soon_threadsafe(shut_down)
        thread.join(timeout)
        if not thread.is_alive():
            loop.close()
