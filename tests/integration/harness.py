"""One harness for the compatibility suite: the same scenario runs on the in-memory manager
and on the queue-backed manager with embedded worker slots (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from queue_core.database import Database
from queue_core.settings import QueueSettings, sqlite_url_for
from tests.integration.handlers import compat_handlers
from workers.integration import (
    InMemoryRunRegistry,
    InMemoryTaskManager,
    QueueTaskManager,
    Run,
    RunStatus,
    TaskManager,
)
from workers.integration.embedded import embedded_workers
from workers.runtime import WorkerConfig

FLAVOURS = ["in-memory", "queue-sqlite", "queue-postgresql"]
SLOTS = 2
WAIT_SECONDS = 30.0

# Short leases so a cancel request reaches a running handler within a second (the lease
# keeper ticks at a third of the lease); quick polls so an idle slot notices new work soon.
EMBEDDED_CONFIG = WorkerConfig(lease_seconds=3.0, poll_interval=0.1)


@dataclass(frozen=True)
class Flavour:
    name: str
    db_url: str | None

    @property
    def is_queue(self) -> bool:
        return self.db_url is not None


def make_flavour(name: str, request: pytest.FixtureRequest, tmp_path: Path) -> Flavour:
    if name == "in-memory":
        return Flavour(name, None)
    if name == "queue-sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        target = tmp_path / "compat.db"
        shutil.copyfile(template, target)
        return Flavour(name, sqlite_url_for(target))
    from tests.conftest import _reset_postgres

    url: str = request.getfixturevalue("pg_schema_url")
    _reset_postgres(url)
    return Flavour(name, url)


@asynccontextmanager
async def running_manager(
    flavour: Flavour, registry: InMemoryRunRegistry
) -> AsyncIterator[TaskManager]:
    if flavour.db_url is None:
        memory = InMemoryTaskManager(registry, compat_handlers)
        try:
            yield memory
        finally:
            await memory.close()
        return
    # Retries without back-off, two attempts: a failing handler fails its run quickly.
    db = Database(flavour.db_url, QueueSettings(retry_base_seconds=0.0))
    manager = QueueTaskManager(
        registry,
        db,
        compat_handlers,
        max_attempts=2,
        sync_min_interval=0.02,
        sync_max_interval=0.2,
        cancel_wait_seconds=WAIT_SECONDS,
        owns_db=True,
    )
    try:
        async with embedded_workers(
            manager, concurrency=SLOTS, shutdown_grace=1.0, config=EMBEDDED_CONFIG
        ):
            yield manager
    finally:
        await manager.close()


def start_old_style(manager: TaskManager, run: Run) -> str:
    """What an existing caller does: build the coroutine itself and hand it over."""
    return manager.start_task(run, compat_handlers.coroutine_for(run.module_id, run.parameters))


async def until(predicate: Callable[[], bool], timeout: float = WAIT_SECONDS) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


def status_of(registry: InMemoryRunRegistry, run_id: str) -> RunStatus | None:
    run = registry.get_run(run_id)
    return run.status if run is not None else None


def is_progression(statuses: list[RunStatus], final: RunStatus) -> bool:
    """queued, then optionally running, then ``final``: the only order either manager shows."""
    allowed = [[RunStatus.QUEUED, final], [RunStatus.QUEUED, RunStatus.RUNNING, final]]
    return statuses in allowed
