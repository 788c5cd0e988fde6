"""InMemoryTaskManager: the old BackgroundTaskManager's behaviour, kept available.

Runs live only in this process: ``start_task`` schedules the coroutine with
``asyncio.create_task``; a restart loses whatever was queued or running. This is what
``PRISMQ_QUEUE_TASK_MANAGER=in-memory`` selects, and where a rollback lands.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from workers.integration.handlers import ModuleHandlers, discard_awaitable, module_handlers
from workers.integration.runs import Run, RunRegistry

log = logging.getLogger("prismq.queue.integration")


@dataclass
class _Entry:
    run: Run
    coro: Coroutine[Any, Any, Any]
    task: asyncio.Task[None]


class InMemoryTaskManager:
    def __init__(self, registry: RunRegistry, handlers: ModuleHandlers | None = None) -> None:
        self.registry = registry
        self.handlers = handlers if handlers is not None else module_handlers
        self._entries: dict[str, _Entry] = {}

    def start_task(self, run: Run, coro: object = None) -> str:
        """Schedule ``coro`` (or, without one, the module's registered handler) and return
        the run_id. A run that is already active is not started twice."""
        if run.run_id in self._entries:
            discard_awaitable(coro)
            return run.run_id
        if coro is None:
            coro = self.handlers.coroutine_for(run.module_id, run.parameters)
        if not asyncio.iscoroutine(coro):
            discard_awaitable(coro)
            raise TypeError(f"start_task needs a coroutine, got {type(coro).__name__}")
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            coro.close()
            raise RuntimeError("start_task must be called while an event loop runs") from None
        if self.registry.get_run(run.run_id) is None:
            self.registry.add_run(run)
        task = loop.create_task(self._execute(run, coro), name=f"run-{run.run_id}")
        self._entries[run.run_id] = _Entry(run, coro, task)
        task.add_done_callback(functools.partial(self._on_done, run.run_id))
        return run.run_id

    async def _execute(self, run: Run, coro: Coroutine[Any, Any, Any]) -> None:
        run.mark_running()
        self.registry.update_run(run)
        try:
            await coro
        except asyncio.CancelledError:
            run.mark_cancelled()
            self.registry.update_run(run)
            raise
        except Exception as exc:  # noqa: BLE001 - whatever the coroutine raises fails the run
            log.warning("run %s (%s) failed: %s", run.run_id, run.module_id, exc)
            run.mark_failed(str(exc) or type(exc).__name__)
            self.registry.update_run(run)
        else:
            run.mark_completed()
            self.registry.update_run(run)

    def _on_done(self, run_id: str, _task: asyncio.Task[None]) -> None:
        self._settle(run_id)

    def _settle(self, run_id: str) -> None:
        entry = self._entries.pop(run_id, None)
        if entry is None or entry.run.status.is_terminal:
            return
        # Cancelled before its first step: the wrapper never ran, so neither did the coroutine.
        entry.coro.close()
        entry.run.mark_cancelled()
        self.registry.update_run(entry.run)

    async def cancel_task(self, run_id: str) -> bool:
        entry = self._entries.get(run_id)
        if entry is None or entry.task.done():
            return False
        entry.task.cancel()
        await asyncio.wait({entry.task})
        self._settle(run_id)
        return True

    async def wait_all(self, timeout: float | None = None) -> None:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while self._entries:
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                raise asyncio.TimeoutError(f"{len(self._entries)} runs still active")
            tasks = {entry.task for entry in self._entries.values()}
            await asyncio.wait(tasks, timeout=remaining)
            for run_id in [rid for rid, e in self._entries.items() if e.task.done()]:
                self._settle(run_id)

    def get_active_task_count(self) -> int:
        return len(self._entries)

    def get_active_task_ids(self) -> list[str]:
        return list(self._entries)

    def is_task_active(self, run_id: str) -> bool:
        entry = self._entries.get(run_id)
        return entry is not None and not entry.task.done()

    async def close(self) -> None:
        """Nothing to release: runs still active keep running until the loop stops."""
