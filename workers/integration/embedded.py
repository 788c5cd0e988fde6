"""Embedded workers: worker slots inside the web process, for single-box installs.

One :class:`workers.runtime.Worker` runs in a background thread, sharing the manager's
Database (so an enqueue in this process wakes it at once on SQLite too) and serving exactly
the manager's module handlers. Each handler is wrapped to tell the manager when it starts and
ends, so the run registry follows embedded runs without waiting for the sync back-off.

Stopping is graceful: the worker stops claiming, lets running handlers finish for up to the
grace period, then releases what is left back to the queue without using up an attempt;
another worker (or this app after a restart) runs it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from queue_core.settings import EMBEDDED_CONCURRENCY_DEFAULT, EMBEDDED_SHUTDOWN_GRACE_SECONDS
from workers.integration.handlers import ModuleHandler
from workers.integration.manager import QueueTaskManager
from workers.registry import Registry
from workers.runtime import Worker, WorkerConfig

STOP_TIMEOUT_MARGIN_SECONDS = 15.0  # beyond the grace: time to release and record outcomes


def _observed(handler: ModuleHandler, notify: Callable[[], None]) -> ModuleHandler:
    @functools.wraps(handler)  # the worker reads the signature (payload, ctx?) through this
    async def run(*args: Any) -> Any:
        notify()
        try:
            return await handler(*args)
        finally:
            notify()

    return run


class EmbeddedWorkers:
    def __init__(
        self,
        manager: QueueTaskManager,
        *,
        concurrency: int = EMBEDDED_CONCURRENCY_DEFAULT,
        shutdown_grace: float = EMBEDDED_SHUTDOWN_GRACE_SECONDS,
        config: WorkerConfig | None = None,
    ) -> None:
        """``config`` sets anything else a worker takes (lease length, strategy,
        capabilities, worker id); ``concurrency`` and ``shutdown_grace`` override it."""
        if not manager.handlers.module_ids():
            raise ValueError(
                "embedded workers need module handlers: register them with "
                "@register_module(...) before the app starts"
            )
        self.manager = manager
        self.config = dataclasses.replace(
            config or WorkerConfig(), concurrency=concurrency, shutdown_grace=shutdown_grace
        )
        self.registry = Registry()
        for module_id in manager.handlers.module_ids():
            handler = manager.handlers.get(module_id)
            self.registry.register(module_id, _observed(handler, manager.notify_changed))
        self.worker = Worker(self.config, registry=self.registry, db=manager.db)

    @property
    def worker_id(self) -> str:
        return self.worker.worker_id

    def start(self) -> None:
        """Start the slots; returns once the worker has registered. Blocking."""
        self.worker.start()

    def stop(self, grace: float | None = None) -> None:
        """Stop gracefully (see the module docstring). Blocking."""
        grace = self.config.shutdown_grace if grace is None else grace
        self.worker.stop(grace, timeout=grace + STOP_TIMEOUT_MARGIN_SECONDS)

    async def astart(self) -> None:
        await asyncio.to_thread(self.start)

    async def astop(self, grace: float | None = None) -> None:
        await asyncio.to_thread(self.stop, grace)
        self.manager.notify_changed()


@asynccontextmanager
async def embedded_workers(
    manager: QueueTaskManager,
    *,
    concurrency: int = EMBEDDED_CONCURRENCY_DEFAULT,
    shutdown_grace: float = EMBEDDED_SHUTDOWN_GRACE_SECONDS,
    config: WorkerConfig | None = None,
) -> AsyncIterator[EmbeddedWorkers]:
    """Worker slots for the duration of the block, in any asyncio program."""
    slots = EmbeddedWorkers(
        manager, concurrency=concurrency, shutdown_grace=shutdown_grace, config=config
    )
    await slots.astart()
    try:
        yield slots
    finally:
        await slots.astop()
