"""A FastAPI lifespan that owns the task manager and, in embedded mode, the worker slots.

    app = FastAPI(lifespan=task_manager_lifespan(lambda: create_task_manager(registry)))

At start-up it builds the manager (so the PRISMQ_QUEUE_TASK_MANAGER switch and its fallback
are decided then, and logged), puts it on ``app.state.task_manager``, and, when the manager
is queue-backed and ``embedded_workers`` is true, starts worker slots in this process. At
shutdown it stops the slots gracefully (running handlers get ``shutdown_grace`` seconds, the
rest go back to the queue unharmed), waits for in-memory runs for as long, and closes the
manager.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from queue_core.settings import EMBEDDED_CONCURRENCY_DEFAULT, EMBEDDED_SHUTDOWN_GRACE_SECONDS
from workers.integration.embedded import EmbeddedWorkers
from workers.integration.interface import TaskManager
from workers.integration.manager import QueueTaskManager
from workers.runtime import WorkerConfig

log = logging.getLogger("prismq.queue.integration")


def task_manager_lifespan(
    create_manager: Callable[[], TaskManager],
    *,
    embedded_workers: bool = True,
    concurrency: int = EMBEDDED_CONCURRENCY_DEFAULT,
    shutdown_grace: float = EMBEDDED_SHUTDOWN_GRACE_SECONDS,
    worker_config: WorkerConfig | None = None,
    state_attribute: str = "task_manager",
) -> Callable[[Any], AbstractAsyncContextManager[None]]:
    """The ``lifespan=`` argument of ``FastAPI(...)``; also works with plain Starlette."""

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        manager = create_manager()
        slots: EmbeddedWorkers | None = None
        if embedded_workers and isinstance(manager, QueueTaskManager):
            slots = EmbeddedWorkers(
                manager,
                concurrency=concurrency,
                shutdown_grace=shutdown_grace,
                config=worker_config,
            )
            await slots.astart()
            log.info("embedded workers: %d slot(s) as worker %s", concurrency, slots.worker_id)
        setattr(app.state, state_attribute, manager)
        try:
            yield
        finally:
            if slots is not None:
                await slots.astop()
                log.info("embedded workers stopped")
            elif not isinstance(manager, QueueTaskManager):
                with contextlib.suppress(asyncio.TimeoutError):
                    await manager.wait_all(timeout=shutdown_grace)
            await manager.close()

    return lifespan
