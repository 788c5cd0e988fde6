"""QueueTaskManager: the old BackgroundTaskManager's methods, backed by the persistent queue.

``start_task`` enqueues one task per run: type = the run's ``module_id``, payload = its
``parameters``, idempotency key = its ``run_id``, so calling it twice for one run never
doubles the work. Whoever executes the task (an embedded worker slot in this process or a
worker process anywhere) runs the module's registered handler.

The run registry learns of progress from a sync loop in this process's event loop. It reads
the tasks of the runs still active in one query, backing off from
``RUN_SYNC_MIN_INTERVAL_SECONDS`` to ``RUN_SYNC_MAX_INTERVAL_SECONDS`` while nothing changes
and waking at once when this process enqueues, cancels, or an embedded worker reports an
outcome (:meth:`notify_changed`). The registry therefore lags the queue by at most the
maximum interval, plus one query.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterable, Mapping
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from queue_core.clock import Clock, utcnow
from queue_core.database import Database
from queue_core.errors import InvalidTransition, QueueError, TaskNotFound
from queue_core.repositories import TaskRepository
from queue_core.schemas import TaskCreate
from queue_core.settings import (
    MAX_ATTEMPTS_DEFAULT,
    PRIORITY_DEFAULT,
    RUN_CANCEL_WAIT_SECONDS,
    RUN_SYNC_MAX_INTERVAL_SECONDS,
    RUN_SYNC_MIN_INTERVAL_SECONDS,
)
from workers.integration.handlers import ModuleHandlers, discard_awaitable, module_handlers
from workers.integration.runs import Run, RunRegistry
from workers.integration.tracking import (
    apply_snapshot,
    new_run,
    snapshot_of,
    snapshots_by_id,
    snapshots_by_run_id,
)

log = logging.getLogger("prismq.queue.integration")

TASK_VANISHED = "its queue task {task_id} no longer exists (purged?)"


class QueueTaskManager:
    def __init__(
        self,
        registry: RunRegistry,
        db: Database,
        handlers: ModuleHandlers | None = None,
        *,
        priority: int = PRIORITY_DEFAULT,
        max_attempts: int = MAX_ATTEMPTS_DEFAULT,
        compatibility: Mapping[str, Any] | None = None,
        require_handler: bool = True,
        sync_min_interval: float = RUN_SYNC_MIN_INTERVAL_SECONDS,
        sync_max_interval: float = RUN_SYNC_MAX_INTERVAL_SECONDS,
        cancel_wait_seconds: float = RUN_CANCEL_WAIT_SECONDS,
        clock: Clock = utcnow,
        owns_db: bool = False,
    ) -> None:
        """``require_handler``: refuse a run whose module has no handler registered in
        this process, instead of enqueuing a task that no worker would claim.
        ``owns_db``: dispose of ``db`` on :meth:`close`."""
        self.registry = registry
        self.db = db
        self.handlers = handlers if handlers is not None else module_handlers
        self.priority = priority
        self.max_attempts = max_attempts
        self.compatibility = dict(compatibility or {})
        self.require_handler = require_handler
        self.sync_min_interval = sync_min_interval
        self.sync_max_interval = max(sync_max_interval, sync_min_interval)
        self.cancel_wait_seconds = cancel_wait_seconds
        self.tasks = TaskRepository(db, clock)
        self._owns_db = owns_db
        self._active: dict[str, Run] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sync_task: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Event | None = None
        self._progress: asyncio.Condition | None = None
        self._closed = False

    # --- the old manager's interface ---

    def start_task(self, run: Run, coro: object = None) -> str:
        """Enqueue the run and return its run_id. ``coro`` cannot be persisted: it is closed
        unawaited, and the module's registered handler runs instead."""
        discard_awaitable(coro)
        if self.require_handler:
            self.handlers.get(run.module_id)
        result = self.tasks.enqueue(
            TaskCreate(
                type=run.module_id,
                payload=run.parameters,
                priority=self.priority,
                max_attempts=self.max_attempts,
                compatibility=self.compatibility,
                idempotency_key=run.run_id,
            )
        )
        if not result.created:
            log.info("run %s was already enqueued as task %s", run.run_id, result.task.task_id)
        apply_snapshot(run, snapshot_of(result.task))
        if run.run_id in self._active:
            return run.run_id  # a retried call: the run is followed already
        self._record(run)
        if not run.status.is_terminal:
            self._active[run.run_id] = run
            self._wake()
        return run.run_id

    async def cancel_task(self, run_id: str) -> bool:
        """Cancel a queued run at once; ask the worker of a running run to stop it and wait
        up to ``cancel_wait_seconds`` for it to end. False when the run is unknown or done."""
        run = self._active.get(run_id) or await self._find_run(run_id)
        if run is None or run.task_id is None:
            return False
        try:
            outcome = await asyncio.to_thread(self.tasks.cancel, run.task_id)
        except (InvalidTransition, TaskNotFound):
            await self.sync_now()
            return False
        if outcome.immediate:
            apply_snapshot(run, snapshot_of(outcome.task))
            self._record(run)
            self._active.pop(run_id, None)
            await self._notify_progress()
            return True
        self._active.setdefault(run_id, run)
        self._wake()
        try:
            await self._wait_until(lambda: run_id not in self._active, self.cancel_wait_seconds)
        except asyncio.TimeoutError:
            log.warning(
                "run %s: cancellation requested; its worker has not stopped it within %.1f s",
                run_id,
                self.cancel_wait_seconds,
            )
        return True

    async def wait_all(self, timeout: float | None = None) -> None:
        """Wait until every run this manager tracks has finished. Sleeps on the sync loop's
        progress signal; it does not poll by itself."""
        self._wake()
        await self._wait_until(lambda: not self._active, timeout)

    def get_active_task_count(self) -> int:
        return len(self._active)

    def get_active_task_ids(self) -> list[str]:
        return list(self._active)

    def is_task_active(self, run_id: str) -> bool:
        return run_id in self._active

    async def close(self) -> None:
        self._closed = True
        task, self._sync_task = self._sync_task, None
        if task is not None:
            if self._wakeup is not None:
                self._wakeup.set()  # the loop sees _closed and returns
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self._owns_db:
            self.db.dispose()

    # --- beyond the old interface ---

    async def track(self, run_ids: Iterable[str]) -> list[str]:
        """Follow runs this process did not start (after a restart, or started by another
        web process): their tasks are found by run_id, and their registry entries kept up to
        date from now on. Returns the run_ids that are still active."""
        snaps = await asyncio.to_thread(snapshots_by_run_id, self.db, list(run_ids))
        for run_id, snap in snaps.items():
            run = self._active.get(run_id) or self.registry.get_run(run_id) or new_run(snap)
            apply_snapshot(run, snap)
            self._record(run)
            if not run.status.is_terminal:
                self._active[run_id] = run
        self._wake()
        return [run_id for run_id in snaps if run_id in self._active]

    def forget(self, run_id: str) -> None:
        """Stop following a run: its registry entry is no longer written by this manager."""
        self._active.pop(run_id, None)

    def notify_changed(self) -> None:
        """Thread-safe: a task may have changed state (an embedded worker finished one), so
        the sync loop should look now rather than at its next back-off tick."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake)

    async def sync_now(self) -> bool:
        """Read the tasks of the active runs once and update the registry; True on change."""
        runs = dict(self._active)
        if not runs:
            await self._notify_progress()
            return False
        ids = [run.task_id for run in runs.values() if run.task_id is not None]
        snaps = await asyncio.to_thread(snapshots_by_id, self.db, ids)
        changed = False
        for run_id, run in runs.items():
            if self._active.get(run_id) is not run:
                continue  # forgotten, or settled by cancel_task, while the query ran
            snap = snaps.get(run.task_id) if run.task_id is not None else None
            if snap is None:
                run.mark_failed(TASK_VANISHED.format(task_id=run.task_id))
                moved = True
            else:
                moved = apply_snapshot(run, snap)
            if moved:
                self._record(run)
                changed = True
            if run.status.is_terminal:
                self._active.pop(run_id, None)
        await self._notify_progress()
        return changed

    # --- the sync loop ---

    def _wake(self) -> None:
        """Start the sync loop if a loop runs in this thread, and have it look now."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no event loop yet: wait_all or the next start_task starts the sync
        if self._closed:
            return
        if self._loop is not loop or self._sync_task is None or self._sync_task.done():
            self._loop = loop
            self._wakeup = asyncio.Event()
            self._progress = asyncio.Condition()
            self._sync_task = loop.create_task(self._sync_loop(), name="prismq-run-sync")
        assert self._wakeup is not None
        self._wakeup.set()

    async def _sync_loop(self) -> None:
        assert self._wakeup is not None
        wakeup = self._wakeup
        interval = self.sync_min_interval
        while not self._closed:
            # With nothing to follow, sleep until a run is started.
            woken = await _wait_event(wakeup, interval if self._active else None)
            if self._closed:
                return
            wakeup.clear()
            try:
                changed = await self.sync_now()
            except (QueueError, SQLAlchemyError) as exc:
                log.warning("run sync: cannot read the queue (%s); retrying", exc)
                changed = False
                woken = False
            interval = (
                self.sync_min_interval
                if changed or woken
                else min(interval * 2, self.sync_max_interval)
            )

    async def _notify_progress(self) -> None:
        if self._progress is None:
            return
        async with self._progress:
            self._progress.notify_all()

    async def _wait_until(self, done: Any, timeout: float | None) -> None:
        if done():
            return
        self._wake()
        progress = self._progress
        assert progress is not None

        async def wait() -> None:
            async with progress:
                await progress.wait_for(done)

        await _within(wait(), timeout)

    # --- helpers ---

    def _record(self, run: Run) -> None:
        if self.registry.get_run(run.run_id) is None:
            self.registry.add_run(run)
        else:
            self.registry.update_run(run)

    async def _find_run(self, run_id: str) -> Run | None:
        run = self.registry.get_run(run_id)
        if run is not None and run.task_id is not None:
            return run
        snaps = await asyncio.to_thread(snapshots_by_run_id, self.db, [run_id])
        snap = snaps.get(run_id)
        if snap is None:
            return None
        if run is None:
            return new_run(snap)
        apply_snapshot(run, snap)
        return run


# asyncio.wait_for before Python 3.12 can swallow a cancellation that arrives as the awaited
# thing completes (gh-86296), leaving a task that was told to stop running on. asyncio.wait
# does not: these two helpers use it.


async def _within(coro: Coroutine[Any, Any, object], timeout: float | None) -> None:
    """Await ``coro``; cancel it and raise TimeoutError after ``timeout`` seconds."""
    task = asyncio.ensure_future(coro)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
    finally:
        if not task.done():
            task.cancel()
    if not done:
        raise asyncio.TimeoutError
    task.result()


async def _wait_event(event: asyncio.Event, timeout: float | None) -> bool:
    """Wait until ``event`` is set (True) or ``timeout`` passes (False)."""
    if event.is_set():
        return True
    try:
        await _within(event.wait(), timeout)
    except asyncio.TimeoutError:
        return False
    return True
