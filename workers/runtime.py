"""The worker: claim due tasks, run their handlers, record the outcomes, and stay alive.

One run loop (the thread that calls :meth:`Worker.run`) owns every change of task state
except lease renewal: it claims as many tasks as it has free slots, hands them to the
executor, waits on one queue (a handler finished, new work may be there, a stop was
requested, a timer is due), records outcomes in batches (``complete_many``), and claims
again at once. Around it:

- the lease keeper thread renews leases and heartbeats (``workers.keeper``);
- the new-task watcher thread wakes the loop on LISTEN/NOTIFY or SQLite ``data_version``
  (``workers.wakeup``), the poll interval being the fallback;
- handlers run on reusable threads or one event loop (``workers.execution``).

A database that is unavailable (busy beyond busy_timeout, restarting, unreachable) is retried
with back-off; finished outcomes wait in memory meanwhile and their leases keep being renewed.
"""

from __future__ import annotations

import logging
import queue
import secrets
import threading
import time
from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

from queue_core.claims import ClaimedTask, Lease
from queue_core.clock import Clock, utcnow
from queue_core.database import Database
from queue_core.dialects import TaskWaiter
from queue_core.errors import DatabaseUnavailable, LeaseLost
from queue_core.maintenance.scheduler import JOB_SWEEP, MaintenanceScheduler, default_jobs
from queue_core.repositories import (
    LeaseRepository,
    RenewResult,
    TaskLogRepository,
    WorkerRepository,
    default_worker_id,
    log_entry,
    sweep,
)
from queue_core.settings import (
    IDLE_BACKOFF_MIN_SECONDS,
)
from queue_core.states import TaskStatus
from workers.attempt import Attempt
from workers.backoff import Backoff
from workers.config import WorkerConfig
from workers.context import TaskContext
from workers.defaults import (
    FINAL_RECORD_SECONDS,
    IMMEDIATE_RECORD_SECONDS,
    TASK_LOGGER,
    WORKER_LOGGER,
)
from workers.execution import HandlerExecutor
from workers.keeper import LeaseKeeper
from workers.metrics import WorkerMetrics
from workers.registry import Registry, default_registry
from workers.signals import handling_stop_signals
from workers.tasklog import ContextAdapter, TaskLogBuffer, TaskLogger
from workers.wakeup import NewTaskWatcher

__all__ = ["Worker", "WorkerConfig", "new_worker_id"]  # WorkerConfig is also importable here


def new_worker_id() -> str:
    """host-pid plus a short random part: unique even for several workers in one process."""
    return f"{default_worker_id()}-{secrets.token_hex(3)}"


class Worker:
    """A worker: ``run()`` blocks (a CLI process), ``start()``/``stop()`` run it in a thread.

    Several Workers can share one process and one :class:`Database`; each has its own
    worker id, slots and metrics registry.
    """

    def __init__(
        self,
        config: WorkerConfig | None = None,
        *,
        registry: Registry | None = None,
        db: Database | None = None,
        clock: Clock = utcnow,
    ) -> None:
        self.config = config or WorkerConfig()
        self.registry = registry if registry is not None else default_registry
        self.worker_id = self.config.worker_id or new_worker_id()
        self.metrics = WorkerMetrics(self.worker_id)
        self.log = ContextAdapter(logging.getLogger(WORKER_LOGGER), {"worker_id": self.worker_id})
        self._given_db = db
        self._clock = clock
        self._inbox: queue.SimpleQueue[Attempt | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        # Keyed by lease, not task id: a task whose lease this worker lost may be claimed by
        # it again while the first handler still runs.
        self._active: dict[Lease, Attempt] = {}
        self._pending: list[Attempt] = []
        self._task_logs = TaskLogBuffer()
        self._backoff = Backoff()
        self._stop_requested = False
        self._immediate = False
        self._grace_override: float | None = None
        self._signals: list[int] = []
        self._draining = False
        self._grace_deadline = float("inf")
        self._give_up_at = float("inf")
        self._interrupts = False
        self._executing_now = 0  # run-loop thread only
        self._timed: set[Attempt] = set()  # executing attempts with a time limit
        self._ready = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._keeper: LeaseKeeper | None = None
        self._watcher: NewTaskWatcher | None = None
        self._waiter: TaskWaiter | None = None  # polled by the run loop itself (SQLite)
        self.types: list[str] = []

    # --- public control ---

    def run(self, *, install_signal_handlers: bool = True) -> None:
        """Run until stopped (a signal, :meth:`stop`, or ``burst`` running out of work).

        Installs SIGINT/SIGTERM (and SIGBREAK) handlers when called from the main thread and
        ``install_signal_handlers`` is true: the first signal stops gracefully, the second at
        once.
        """
        signals = (
            handling_stop_signals(self._on_signal) if install_signal_handlers else nullcontext()
        )
        try:
            with signals:
                self._run()
        finally:
            self._done.set()

    def start(self, *, wait: bool = True, timeout: float | None = None) -> None:
        """Run in a background daemon thread, without signal handlers (embedding).

        With ``wait``, returns once the worker has registered and claims (or raises what
        stopped it from starting); the database being unavailable keeps it retrying, so give
        a ``timeout`` when that must not block.
        """
        if self._thread is not None:
            raise RuntimeError("this worker was started already")
        self._thread = threading.Thread(
            target=self._run_in_thread, name=f"prismq-worker-{self.worker_id}", daemon=True
        )
        self._thread.start()
        if wait:
            self._ready.wait(timeout)
            if self._error is not None:
                raise self._error

    def _run_in_thread(self) -> None:
        try:
            self.run(install_signal_handlers=False)
        except BaseException as exc:
            self._error = exc
            self.log.exception("the worker stopped on an error")
        finally:
            self._ready.set()

    def request_stop(self, *, grace: float | None = None, immediate: bool = False) -> None:
        """Ask the worker to stop; returns at once. Safe from any thread and signal handlers."""
        if grace is not None:
            self._grace_override = grace
        if immediate:
            self._immediate = True
        self._stop_requested = True
        self.wake()

    def stop(self, grace: float | None = None, *, timeout: float | None = None) -> None:
        """Stop gracefully: stop claiming, wait up to ``grace`` seconds (default: the
        configured shutdown grace) for running tasks, release the rest, and return once the
        worker has exited (or ``timeout`` passed). Re-raises an error the worker died of."""
        self.request_stop(grace=grace)
        self.join(timeout)

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the worker to exit; True when it has."""
        if self._thread is not None:
            self._thread.join(timeout)
            finished = not self._thread.is_alive()
        else:
            finished = self._done.wait(timeout)
        if self._error is not None:
            raise self._error
        return finished

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until the worker has registered and started claiming."""
        return self._ready.wait(timeout)

    def wake(self) -> None:
        """Claim now (e.g. right after an enqueue in this process). Not for signal handlers."""
        self._inbox.put(None)
        waiter = self._waiter
        if waiter is not None:
            waiter.wake()

    @property
    def running(self) -> int:
        """Handlers running now."""
        with self._lock:
            return sum(1 for a in self._active.values() if a.executing)

    @property
    def is_stopping(self) -> bool:
        return self._stop_requested

    def _on_signal(self, signum: int) -> None:
        # Runs between two bytecodes of the main thread, which may hold any lock: only flags
        # and SimpleQueue.put (re-entrant). The loop notices within one poll interval.
        self._signals.append(signum)
        if len(self._signals) > 1:
            self._immediate = True
        self._stop_requested = True
        self._inbox.put(None)

    # --- life cycle ---

    def _run(self) -> None:
        types = self.registry.names()
        if not types:
            raise ValueError("no task handlers are registered: import a module that has @task")
        self.types = types
        owns_db = self._given_db is None
        self.db = self._given_db or Database(self.config.database_url)
        self.leases = LeaseRepository(self.db, self._clock)
        self.workers = WorkerRepository(self.db, self._clock)
        self.task_log_repo = TaskLogRepository(self.db, self._clock)
        self.maintenance = self._maintenance_scheduler()
        self.executor = HandlerExecutor(
            self.config.concurrency, result_limit_bytes=self.db.settings.payload_max_bytes
        )
        registered = False
        try:
            if self.config.metrics_port is not None:
                self.metrics.serve(self.config.metrics_port, self.config.metrics_host)
            registered = self._register()
            if registered:
                self._start_helpers()
                self._ready.set()
                try:
                    self._serve()
                except BaseException:
                    self.log.exception("the run loop failed; giving back running tasks")
                    self._abandon_all()
                    self._record_until(time.monotonic() + FINAL_RECORD_SECONDS)
                    raise
        finally:
            self._close(registered, owns_db)

    def _register(self) -> bool:
        config = self.config
        while not self._stop_requested:
            try:
                self.workers.register(
                    self.worker_id,
                    capabilities=config.capabilities,
                    task_types=self.types,
                    concurrency=config.concurrency,
                    strategy=str(config.strategy),
                )
                # A previous process with this id died without releasing: recover its tasks.
                report = self.leases.release_worker_tasks(self.worker_id, "worker restarted")
            except DatabaseUnavailable as exc:  # anything else at start-up is fatal
                self._db_failed("register", exc)
                self._wait(self._backoff.remaining())
                continue
            self._db_ok()
            if report.total:
                self.log.warning("recovered %d task(s) held by this worker id before", report.total)
            self.log.info(
                "worker started: types %s, concurrency %d, strategy %s, lease %g s, on %s",
                ",".join(self.types),
                config.concurrency,
                config.strategy,
                config.lease_seconds,
                self.db.safe_url,
            )
            return True
        return False

    def _start_helpers(self) -> None:
        self._keeper = LeaseKeeper(
            leases=self.leases,
            worker_id=self.worker_id,
            lease_seconds=self.config.lease_seconds,
            held=self._held_leases,
            on_renewed=self._on_renewed,
            after_tick=self._flush_task_logs_quietly,
            on_unavailable=self._keeper_unavailable,
            logger=self.log,
        )
        self._keeper.start()
        waiter = self.db.new_task_waiter()
        if waiter.in_loop:
            # SQLite: data_version polling is cheap, and waking from it on the run loop's own
            # thread saves a thread hand-over on the way from enqueue to start.
            self._waiter = waiter
        else:
            # PostgreSQL: LISTEN blocks and cannot be woken from here; a thread waits on it.
            waiter.close()
            self._watcher = NewTaskWatcher(self.db, self.config.poll_interval, self.wake)
            self._watcher.start()

    def _close(self, registered: bool, owns_db: bool) -> None:
        if self._watcher is not None:
            self._watcher.stop()
        if self._waiter is not None:
            self._waiter.close()
            self._waiter = None
        if self._keeper is not None:
            self._keeper.stop()
        if registered:
            self._flush_task_logs_quietly()
            deadline = time.monotonic() + IMMEDIATE_RECORD_SECONDS
            while True:
                try:
                    self.workers.stop(self.worker_id)
                    break
                except Exception as exc:  # noqa: BLE001
                    if time.monotonic() >= deadline:
                        self.log.warning("could not mark the worker stopped: %s", exc)
                        break
                    time.sleep(0.1)
        self.executor.close()
        self.metrics.close()
        if owns_db:
            self.db.dispose()
        with self._lock:
            left = len(self._active)
        if left:
            self.log.error(
                "exiting with %d task(s) still leased; their leases expire and they run again",
                left,
            )
        self.log.info("worker stopped")

    # --- the run loop ---

    def _serve(self) -> None:
        config = self.config
        sweep_every = config.effective_sweep_interval
        next_sweep = 0.0
        idle_delay = IDLE_BACKOFF_MIN_SECONDS
        while True:
            self._drain_inbox()
            now = time.monotonic()
            self._notice_stop(now)
            self._enforce_time_limits(now)
            self._interrupt_stopped_handlers()
            if self._draining and now >= self._grace_deadline:
                self._give_back_running()
            wanted = found = 0
            claimed_ok = False
            completions: list[Attempt] = []
            if self._backoff.ready():
                if self._pending:
                    # Successes wait for the claim below when one follows: one transaction
                    # records them and claims again (LeaseRepository.complete_and_claim).
                    will_claim = not self._draining and self._executing() < config.concurrency
                    completions = self._record(defer_completions=will_claim)
                if not self._draining and now >= next_sweep and self._backoff.ready():
                    self._sweep()
                    next_sweep = now + sweep_every
                    if self.maintenance is not None:
                        self.maintenance.run_due()  # never raises; cheap until a job is due
                if not self._draining and self._backoff.ready():
                    wanted = config.concurrency - self._executing()
                    if wanted > 0:
                        claimed = self._claim(wanted, completions)
                        completions = []
                        if claimed is not None:
                            claimed_ok, found = True, claimed
            if completions:  # no claim followed (the sweep hit a database error): later
                self._put_back(completions)
            if self._draining:
                if not self._executing() and not self._pending:
                    return
                if time.monotonic() >= self._give_up_at:
                    self.log.error(
                        "giving up on recording %d outcome(s): the database is unavailable; "
                        "their leases expire and the tasks run again",
                        len(self._pending),
                    )
                    return
            elif (
                config.burst
                and claimed_ok
                and found == 0
                and not self._executing()
                and not self._pending
            ):
                self.log.info("burst: no due task left; stopping")
                return
            if self._draining or wanted <= 0 or found == wanted:
                limit = config.poll_interval  # no free slot: wait for an outcome or a timer
            elif found:
                idle_delay = IDLE_BACKOFF_MIN_SECONDS  # the queue ran dry just now
                limit = idle_delay
            elif claimed_ok:
                limit = idle_delay
                idle_delay = min(idle_delay * 2, config.poll_interval)
            else:
                limit = config.poll_interval  # the database is backing off
            want_work = not self._draining and self._executing_now < config.concurrency
            self._wait(self._next_timeout(time.monotonic(), limit), want_work=want_work)

    def _next_timeout(self, now: float, limit: float) -> float:
        timeout = min(limit, self.config.poll_interval)
        for attempt in self._timed:
            if attempt.deadline is not None:
                timeout = min(timeout, attempt.deadline - now)
        if self._backoff.failing:
            timeout = min(timeout, max(self._backoff.remaining(), 0.001))
        if self._draining:
            timeout = min(timeout, self._grace_deadline - now)
        return max(0.0, timeout)

    def _wait(self, timeout: float, *, want_work: bool = False) -> None:
        waiter = self._waiter
        if want_work and waiter is not None and not self._backoff.failing:
            if self._inbox.empty():
                waiter.wait(max(0.0, timeout))  # new work, wake() or the timeout
            return  # the loop drains the inbox next
        try:
            item = self._inbox.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return
        self._take(item)

    def _drain_inbox(self) -> None:
        while True:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return
            self._take(item)

    def _take(self, item: Attempt | None) -> None:
        if item is None:
            return  # a wake-up
        attempt = item
        execution = attempt.execution
        if attempt.abandoned or execution is None or execution.outcome is None:
            attempt.log.debug("a late result of an abandoned handler was discarded")
            return
        self._not_executing(attempt)
        attempt.outcome = execution.outcome
        self.metrics.run_seconds.labels(attempt.task.type).observe(attempt.outcome.duration)
        self._pending.append(attempt)

    def _executing_attempts(self) -> list[Attempt]:
        with self._lock:
            return [a for a in self._active.values() if a.executing]

    def _executing(self) -> int:
        return self._executing_now

    def _not_executing(self, attempt: Attempt) -> None:
        attempt.executing = False
        self._executing_now -= 1
        self._timed.discard(attempt)
        self.metrics.running.dec()

    def _notice_stop(self, now: float) -> None:
        if not self._stop_requested:
            return
        if not self._draining:
            self._draining = True
            grace = (
                self._grace_override
                if self._grace_override is not None
                else self.config.shutdown_grace
            )
            self._grace_deadline = now + grace
            self._give_up_at = self._grace_deadline + FINAL_RECORD_SECONDS
            reason = f"signal {self._signals[0]}" if self._signals else "a stop request"
            self.log.info(
                "stopping on %s: no new claims; waiting up to %g s for %d running task(s)",
                reason,
                grace,
                self._executing(),
            )
        if self._immediate and self._grace_deadline > now:
            self._grace_deadline = now
            self._give_up_at = now + IMMEDIATE_RECORD_SECONDS
            self.log.warning("stopping at once: releasing running tasks")

    # --- claiming and starting ---

    def _claim(self, wanted: int, completions: Sequence[Attempt] = ()) -> int | None:
        """Claim up to ``wanted`` tasks, recording ``completions`` in the same transaction."""
        config = self.config
        started = time.perf_counter()
        options: dict[str, Any] = {
            "capabilities": config.capabilities,
            "limit": wanted,
            "lease_seconds": config.lease_seconds,
            "strategy": config.strategy,
        }
        try:
            if completions:
                lost, tasks = self.leases.complete_and_claim(
                    [(a.lease, a.outcome.result if a.outcome else None) for a in completions],
                    self.worker_id,
                    self.types,
                    **options,
                )
            else:
                tasks = self.leases.claim(self.worker_id, self.types, **options)
        except Exception as exc:  # noqa: BLE001
            self._db_failed("claim", exc)
            if completions:  # recorded on their own next time (the back-off is failing now)
                self._put_back(list(completions))
            return None
        self.metrics.claim_seconds.observe(time.perf_counter() - started)
        self._db_ok()
        if completions:
            self._completed(completions, set(lost))
        for task in tasks:
            self._start(task)
        return len(tasks)

    def _start(self, task: ClaimedTask) -> None:
        config = self.config
        context = {
            "worker_id": self.worker_id,
            "task_id": task.task_id,
            "task_type": task.type,
            "attempt": task.attempt,
        }
        limit = task.timeout_seconds or config.task_timeout
        ctx = TaskContext(
            task_id=task.task_id,
            attempt=task.attempt,
            worker_id=self.worker_id,
            task_type=task.type,
            max_attempts=task.max_attempts,
            timeout_seconds=limit,
            logger=TaskLogger(
                logging.getLogger(TASK_LOGGER),
                context,
                buffer=self._task_logs,
                task_id=task.task_id,
                record_level=config.task_log_level,
                clock=self._clock,
            ),
        )
        now = time.monotonic()
        attempt = Attempt(
            task=task,
            handler=self.registry.get(task.type),
            ctx=ctx,
            log=ContextAdapter(self.log.logger, context),
            started=now,
            deadline=now + limit if limit else None,
        )
        if task.cancel_requested:
            ctx._request_cancel()
        with self._lock:
            self._active[task.lease] = attempt
        self._executing_now += 1
        if attempt.deadline is not None:
            self._timed.add(attempt)
        self.metrics.claimed.labels(task.type).inc()
        self.metrics.running.inc()
        attempt.log.debug("task started (attempt %d of %d)", task.attempt, task.max_attempts)
        attempt.execution = self.executor.start(
            attempt.handler, task.payload, ctx, lambda _execution: self._finished(attempt)
        )

    def _finished(self, attempt: Attempt) -> None:
        """Called on the handler's thread when it returns."""
        self._inbox.put(attempt)
        waiter = self._waiter
        if waiter is not None:
            waiter.wake()

    # --- while running ---

    def _held_leases(self) -> list[Lease]:
        with self._lock:
            return [a.lease for a in self._active.values() if not a.recording]

    def _on_renewed(self, leases: Sequence[Lease], renewed: dict[int, RenewResult]) -> None:
        wake = False
        with self._lock:
            for lease in leases:
                attempt = self._active.get(lease)
                if attempt is None or attempt.recording:
                    continue  # recorded meanwhile
                result = renewed.get(lease.task_id)
                if result is None:
                    if not attempt.ctx.lease_lost:
                        attempt.ctx._lose_lease()
                        attempt.log.warning("lease lost: another worker may run this task")
                        wake = True
                elif result.cancel_requested and not attempt.ctx.cancel_requested:
                    attempt.ctx._request_cancel()
                    attempt.log.info("cancellation requested")
                    wake = True
            if wake:
                self._interrupts = True
        if wake:
            self.wake()

    def _interrupt_stopped_handlers(self) -> None:
        if not self._interrupts:
            return
        self._interrupts = False
        for attempt in self._executing_attempts():
            if attempt.ctx.should_stop and not attempt.interrupted and attempt.execution:
                attempt.interrupted = True
                self.executor.interrupt(attempt.execution)

    def _enforce_time_limits(self, now: float) -> None:
        for attempt in list(self._timed):
            if attempt.deadline is None or now < attempt.deadline or attempt.execution is None:
                continue
            if not self.executor.abandon(attempt.execution):
                continue  # it finished just now; its outcome is in the inbox
            self._stop_waiting(attempt)
            attempt.timed_out = True
            attempt.ctx._time_out()
            self.metrics.timed_out.labels(attempt.task.type).inc()
            attempt.log.warning(
                "time limit of %g s exceeded; the attempt fails%s",
                attempt.ctx.timeout_seconds,
                ""
                if attempt.handler.is_async
                else " (its thread cannot be stopped; its result will be discarded)",
            )

    def _stop_waiting(self, attempt: Attempt) -> None:
        attempt.abandoned = True
        self._not_executing(attempt)
        self._pending.append(attempt)

    def _give_back_running(self) -> None:
        for attempt in self._executing_attempts():
            if attempt.execution is None or not self.executor.abandon(attempt.execution):
                continue
            self._stop_waiting(attempt)
            attempt.released = True

    def _abandon_all(self) -> None:
        with self._lock:
            attempts = list(self._active.values())
        for attempt in attempts:
            if attempt.executing and attempt.execution is not None:
                self.executor.abandon(attempt.execution)
                self._stop_waiting(attempt)
                attempt.released = True
            elif not attempt.abandoned and attempt not in self._pending:
                self._pending.append(attempt)

    # --- recording outcomes ---

    def _record(self, *, defer_completions: bool = False) -> list[Attempt]:
        """Record pending outcomes. With ``defer_completions`` (and the database healthy),
        successes are returned unrecorded for the caller to record with its claim."""
        batch, self._pending = self._pending, []
        completes: list[Attempt] = []
        others: list[Attempt] = []
        lost: list[Attempt] = []
        with self._lock:
            for attempt in batch:
                if attempt.ctx.lease_lost:
                    lost.append(attempt)
                    continue
                attempt.recording = True
                succeeded = attempt.outcome is not None and attempt.outcome.succeeded
                if succeeded and not attempt.ctx.cancel_requested:
                    completes.append(attempt)
                else:
                    others.append(attempt)
        for attempt in lost:
            self._discard_lost(attempt)
        if not completes and not others:
            return []
        waiting: list[Attempt] = []
        deferred: list[Attempt] = []
        if not self._flush_task_logs():
            waiting = completes + others
            completes, others = [], []
        if completes and defer_completions and not self._backoff.failing:
            deferred, completes = completes, []
        if completes:
            waiting += self._record_completions(completes)
        for attempt in others:
            if self._backoff.failing and not self._backoff.ready():
                waiting.append(attempt)
                continue
            if not self._record_one(attempt):
                waiting.append(attempt)
        if waiting:
            self._put_back(waiting)
        return deferred

    def _put_back(self, attempts: list[Attempt]) -> None:
        """Outcomes not recorded yet: pending again, and their leases renewed meanwhile."""
        with self._lock:
            for attempt in attempts:
                attempt.recording = False
        self._pending = attempts + self._pending

    def _record_completions(self, attempts: list[Attempt]) -> list[Attempt]:
        try:
            lost = set(
                self.leases.complete_many(
                    [(a.lease, a.outcome.result if a.outcome else None) for a in attempts]
                )
            )
        except Exception as exc:  # noqa: BLE001
            self._db_failed("complete", exc)
            return attempts
        self._db_ok()
        self._completed(attempts, lost)
        return []

    def _completed(self, attempts: Sequence[Attempt], lost: set[int]) -> None:
        for attempt in attempts:
            if attempt.task_id in lost:
                self._discard_lost(attempt)
                continue
            self.metrics.completed.labels(attempt.task.type).inc()
            attempt.log.debug("task completed")
            self._forget(attempt)

    def _record_one(self, attempt: Attempt) -> bool:
        """Record a non-success outcome; False when the database must be retried."""
        task_type = attempt.task.type
        outcome = attempt.outcome
        try:
            if attempt.released:
                self.leases.release(attempt.lease, "worker shutting down")
                self.metrics.released.labels(task_type).inc()
                attempt.log.info("released unfinished (no attempt used)")
            elif attempt.ctx.cancel_requested:
                self.leases.mark_cancelled(attempt.lease)
                self.metrics.cancelled.labels(task_type).inc()
                attempt.log.info("task cancelled")
            else:
                if attempt.timed_out:
                    error, permanent = f"timed out after {attempt.ctx.timeout_seconds:g} s", False
                elif outcome is not None and outcome.kind == "failed":
                    error, permanent = outcome.error or "failed", outcome.permanent
                else:
                    error, permanent = "the handler was cancelled", False
                result = self.leases.fail(attempt.lease, error, permanent=permanent)
                self._log_failure(attempt, error, result.status, result.run_after_utc)
        except LeaseLost:
            self._discard_lost(attempt)
            return True
        except Exception as exc:  # noqa: BLE001
            self._db_failed("record outcome", exc)
            return False
        self._db_ok()
        self._forget(attempt)
        return True

    def _log_failure(self, attempt: Attempt, error: str, status: TaskStatus, retry_at: Any) -> None:
        outcome = attempt.outcome
        exception = outcome.exception if outcome is not None else None
        exc_info = (type(exception), exception, exception.__traceback__) if exception else None
        task_type = attempt.task.type
        if status is TaskStatus.QUEUED:
            self.metrics.retried.labels(task_type).inc()
            attempt.log.warning(
                "attempt %d of %d failed (%s); retry at %s",
                attempt.task.attempt,
                attempt.task.max_attempts,
                error,
                retry_at.isoformat() if retry_at else "?",
                exc_info=exc_info,
            )
        else:
            self.metrics.failed.labels(task_type).inc()
            attempt.log.error(
                "task failed for good on attempt %d of %d: %s",
                attempt.task.attempt,
                attempt.task.max_attempts,
                error,
                exc_info=exc_info,
            )

    def _discard_lost(self, attempt: Attempt) -> None:
        """The lease is gone: whatever the handler produced is discarded (at-least-once)."""
        self.metrics.lease_lost.labels(attempt.task.type).inc()
        attempt.log.warning("lease lost before the outcome was recorded; the result is discarded")
        # The task's history says why this run left no outcome (written with the next batch).
        self._task_logs.add(
            log_entry(
                attempt.task_id,
                "result discarded: the lease was lost",
                self._clock(),
                level="WARNING",
                event="lease_lost",
                worker_id=self.worker_id,
                attempt=attempt.task.attempt,
            )
        )
        self._forget(attempt)

    def _forget(self, attempt: Attempt) -> None:
        with self._lock:
            self._active.pop(attempt.lease, None)

    def _record_until(self, deadline: float) -> None:
        while self._pending and time.monotonic() < deadline:
            if not self._backoff.ready():
                time.sleep(min(self._backoff.remaining(), max(0.0, deadline - time.monotonic())))
            self._record()

    # --- task logs ---

    def _flush_task_logs(self) -> bool:
        entries = self._task_logs.take()
        if not entries:
            return True
        try:
            self.task_log_repo.add_many(entries)
        except Exception as exc:  # noqa: BLE001
            self._task_logs.put_back(entries)
            self._db_failed("write task logs", exc)
            return False
        return True

    def _flush_task_logs_quietly(self) -> None:
        entries = self._task_logs.take()
        if not entries:
            return
        try:
            self.task_log_repo.add_many(entries)
        except Exception:  # noqa: BLE001 - retried on the next tick or outcome
            self._task_logs.put_back(entries)

    # --- recovery and maintenance ---

    def _maintenance_scheduler(self) -> MaintenanceScheduler | None:
        if not self.config.maintenance:
            return None
        # The run loop sweeps on its own, every few seconds; the scheduler adds the jobs that
        # one worker at a time should run (checkpoint, optimize, purge).
        jobs = [
            job
            for job in default_jobs(self.db, self.db.settings, self._clock)
            if job.name != JOB_SWEEP
        ]
        scheduler = MaintenanceScheduler(
            self.db, holder=self.worker_id, clock=self._clock, jobs=jobs
        )
        return scheduler if scheduler.enabled else None

    def _sweep(self) -> None:
        try:
            report = sweep(self.db, self._clock)
        except Exception as exc:  # noqa: BLE001
            self._db_failed("sweep", exc)
            return
        if report.total:
            self.log.info(
                "recovered %d task(s) from expired leases or stale workers: "
                "%d requeued, %d failed, %d cancelled",
                report.total,
                len(report.requeued),
                len(report.failed),
                len(report.cancelled),
            )

    # --- database trouble ---

    def _db_failed(self, operation: str, error: Exception) -> None:
        self.metrics.db_unavailable.labels(operation).inc()
        delay = self._backoff.failed()
        if isinstance(error, DatabaseUnavailable):
            if self._backoff.failures == 1 or self._backoff.failures % 10 == 0:
                self.log.warning(
                    "database unavailable during %s (%s); retrying in %.2f s (failure %d)",
                    operation,
                    error,
                    delay,
                    self._backoff.failures,
                )
        else:
            self.log.error(
                "database error during %s; retrying in %.2f s",
                operation,
                delay,
                exc_info=(type(error), error, error.__traceback__),
            )

    def _db_ok(self) -> None:
        if self._backoff.failing:
            outage = self._backoff.succeeded()
            self.log.warning("database available again after %.1f s", outage or 0.0)

    def _keeper_unavailable(self, operation: str, error: Exception, delay: float) -> None:
        self.metrics.db_unavailable.labels(operation).inc()
        self.log.warning(
            "database unavailable during %s (%s); retrying in %.2f s", operation, error, delay
        )
