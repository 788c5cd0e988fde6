"""Running handlers: a fixed set of threads for sync handlers, one event loop for async ones.

The runtime hands an :class:`Execution` to :class:`HandlerExecutor` and hears back through
the execution's ``on_done`` callback, called from the thread that ran the handler. Nothing
here touches the database.

A thread cannot be killed. When a sync handler overruns its time limit (or the worker stops
waiting for it at shutdown) its thread is *retired*: a new thread takes its place, and the
old one exits whenever the handler returns, its result discarded. Async handlers are
cancelled instead.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import queue
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import orjson

from workers.context import TaskContext
from workers.defaults import ERROR_MESSAGE_MAX_CHARS, WORKER_LOGGER
from workers.errors import PermanentError
from workers.registry import Handler

log = logging.getLogger(WORKER_LOGGER)


@dataclass(frozen=True)
class Outcome:
    """How a handler ended: it returned ``result``, raised ``error``, or was cancelled."""

    kind: str  # "succeeded" | "failed" | "interrupted"
    result: Any = None
    error: str | None = None
    permanent: bool = False
    exception: BaseException | None = None
    duration: float = 0.0

    @property
    def succeeded(self) -> bool:
        return self.kind == "succeeded"


def describe_error(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    if len(text) > ERROR_MESSAGE_MAX_CHARS:
        text = text[: ERROR_MESSAGE_MAX_CHARS - 1] + "…"
    return text


def _checked_result(value: Any, limit_bytes: int, duration: float) -> Outcome:
    if inspect.isawaitable(value):
        if inspect.iscoroutine(value):
            value.close()
        return Outcome(
            "failed",
            error="the handler returned an awaitable; declare it `async def`",
            duration=duration,
        )
    try:
        size = len(orjson.dumps(value))
    except TypeError as exc:
        return Outcome(
            "failed",
            error=f"the handler's return value is not JSON-serialisable: {exc}",
            duration=duration,
        )
    if size > limit_bytes:
        return Outcome(
            "failed",
            error=f"the handler's return value is {size} bytes of JSON; the limit is {limit_bytes}",
            duration=duration,
        )
    return Outcome("succeeded", result=value, duration=duration)


def _raised(error: BaseException, duration: float) -> Outcome:
    return Outcome(
        "failed",
        error=describe_error(error),
        permanent=isinstance(error, PermanentError),
        exception=error,
        duration=duration,
    )


class Execution:
    """One run of one handler. ``on_done`` is called once, from the running thread."""

    def __init__(
        self,
        handler: Handler,
        payload: dict[str, Any],
        ctx: TaskContext,
        on_done: Callable[[Execution], None],
        *,
        result_limit_bytes: int,
    ) -> None:
        self.handler = handler
        self.payload = payload
        self.ctx = ctx
        self.on_done = on_done
        self.result_limit_bytes = result_limit_bytes
        self.outcome: Outcome | None = None
        self.retired = False
        self._finished = False
        self._task: asyncio.Task[None] | None = None

    def _args(self) -> tuple[Any, ...]:
        return (self.payload, self.ctx) if self.handler.takes_context else (self.payload,)

    def run_sync(self) -> None:
        started = time.perf_counter()
        try:
            value = self.handler.func(*self._args())
        except BaseException as exc:  # noqa: BLE001 - a handler's SystemExit is a failure too
            outcome = _raised(exc, time.perf_counter() - started)
        else:
            outcome = _checked_result(value, self.result_limit_bytes, time.perf_counter() - started)
        self._finish(outcome)

    async def run_async(self) -> None:
        started = time.perf_counter()
        try:
            value = await self.handler.func(*self._args())
        except asyncio.CancelledError:
            outcome = Outcome(
                "interrupted", error="cancelled", duration=time.perf_counter() - started
            )
        except BaseException as exc:  # noqa: BLE001
            outcome = _raised(exc, time.perf_counter() - started)
        else:
            outcome = _checked_result(value, self.result_limit_bytes, time.perf_counter() - started)
        self._finish(outcome)

    def _finish(self, outcome: Outcome) -> None:
        self.outcome = outcome
        self._finished = True
        try:
            self.on_done(self)
        except Exception:  # pragma: no cover - the runtime's callback only enqueues
            log.exception("reporting the end of task %s failed", self.ctx.task_id)

    @property
    def finished(self) -> bool:
        return self._finished


class ThreadSlots:
    """Up to ``size`` daemon threads taking sync executions from one queue.

    Threads start on demand and are reused, never created per task. Daemon threads, so a
    handler that never returns cannot keep the process from exiting.
    """

    def __init__(self, size: int, name: str = "prismq-handler") -> None:
        self._size = size
        self._name = name
        self._jobs: queue.SimpleQueue[Execution | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._live = 0
        self._idle = 0
        self._serial = 0
        self._threads: list[threading.Thread] = []

    def submit(self, execution: Execution) -> None:
        with self._lock:
            if self._idle == 0 and self._live < self._size:
                self._spawn_locked()
            else:
                self._idle -= 1
        self._jobs.put(execution)

    def _spawn_locked(self) -> None:
        self._serial += 1
        self._live += 1
        thread = threading.Thread(
            target=self._serve, name=f"{self._name}-{self._serial}", daemon=True
        )
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def _serve(self) -> None:
        while True:
            execution = self._jobs.get()
            if execution is None:
                return
            execution.run_sync()
            with self._lock:
                if execution.retired:
                    return  # a replacement took this thread's place
                self._idle += 1

    def retire(self, execution: Execution) -> bool:
        """Stop waiting for ``execution``: its thread leaves the pool when the handler returns,
        and the next submit starts a new thread in its place.

        Returns False when the execution had already finished (nothing to retire).
        """
        with self._lock:
            if execution.finished:
                return False
            execution.retired = True
            self._live -= 1
            return True

    def close(self, timeout: float = 1.0) -> None:
        with self._lock:
            threads = [t for t in self._threads if t.is_alive()]
            count = self._live
            self._live = 0
            self._idle = 0
        for _ in range(count):
            self._jobs.put(None)
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))


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

    def submit(self, execution: Execution) -> None:
        self._ensure_loop().call_soon_threadsafe(self._start, execution)

    def _start(self, execution: Execution) -> None:
        coro: Coroutine[Any, Any, None] = execution.run_async()
        task = asyncio.get_running_loop().create_task(coro)
        execution._task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda _task: self._ensure_finished(execution))
        if execution.ctx.should_stop:
            # Stopped before it started: cancel after its first step, inside its try block.
            asyncio.get_running_loop().call_soon(task.cancel)

    @staticmethod
    def _ensure_finished(execution: Execution) -> None:
        if not execution.finished:  # cancelled before its first step ran
            execution._finish(Outcome("interrupted", error="cancelled"))

    def cancel(self, execution: Execution) -> None:
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


class HandlerExecutor:
    """Starts executions on the right runner and stops waiting for them on request."""

    def __init__(self, concurrency: int, *, result_limit_bytes: int) -> None:
        self.result_limit_bytes = result_limit_bytes
        self.threads = ThreadSlots(concurrency)
        self.loop = AsyncRunner()

    def start(
        self,
        handler: Handler,
        payload: dict[str, Any],
        ctx: TaskContext,
        on_done: Callable[[Execution], None],
    ) -> Execution:
        execution = Execution(
            handler, payload, ctx, on_done, result_limit_bytes=self.result_limit_bytes
        )
        if handler.is_async:
            self.loop.submit(execution)
        else:
            self.threads.submit(execution)
        return execution

    def interrupt(self, execution: Execution) -> None:
        """Ask an async handler to stop now (cancel); sync handlers see it in their context."""
        if execution.handler.is_async:
            self.loop.cancel(execution)

    def abandon(self, execution: Execution) -> bool:
        """Stop waiting: cancel an async handler, retire a sync handler's thread."""
        if execution.handler.is_async:
            if execution.finished:
                return False
            execution.retired = True
            self.loop.cancel(execution)
            return True
        return self.threads.retire(execution)

    def close(self, timeout: float = 1.0) -> None:
        self.loop.close(timeout)
        self.threads.close(timeout)
