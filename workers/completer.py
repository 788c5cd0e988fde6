"""The completer: owns the outcomes that are decided but not written yet.

Finished attempts wait here (state FINISHED). They are written

- together with the next claim, in one transaction (:meth:`Completer.flush_and_claim`, called
  by the fetcher): a busy worker commits once per round, not once per task;
- on their own once the oldest has waited ``FLUSH_INTERVAL_SECONDS`` (the runtime's timer), so
  a result never waits behind a long handler or a deep prefetch;
- at shutdown, retried for up to ``FINAL_RECORD_SECONDS``.

A flush that fails because the database is unavailable puts every outcome back, in order; the
lease keeper keeps renewing their leases meanwhile, so nothing pending is lost. An outcome
whose lease was lost (another worker may run the task now) is discarded and logged, exactly
as the lease-token guard of every transition demands.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from queue_core.claims import ClaimedTask, ClaimRequest
from queue_core.clock import Clock
from queue_core.repositories import LeaseRepository, TaskLogRepository, log_entry
from queue_core.states import TaskStatus
from queue_core.transitions import (
    Applied,
    Cancelled,
    Completed,
    Outcome,
    Released,
    Retry,
    after_failure,
)
from workers.attempt import Attempt, AttemptState, AttemptTable
from workers.defaults import FLUSH_INTERVAL_SECONDS
from workers.execution import INTERRUPTED, NOT_STARTED, RELEASED, SUCCEEDED, TIMED_OUT
from workers.health import DatabaseHealth
from workers.metrics import WorkerMetrics
from workers.tasklog import TaskLogBuffer

_FINISHED = frozenset({AttemptState.FINISHED})
_FLUSHING = frozenset({AttemptState.FLUSHING})


@dataclass(frozen=True)
class ClaimArgs:
    """What one claim asks for (LeaseRepository.claim's arguments)."""

    worker_id: str
    types: Sequence[str]
    limit: int
    capabilities: dict[str, Any]
    lease_seconds: float
    strategy: str

    def request(self) -> ClaimRequest:
        return ClaimRequest(
            self.worker_id, list(self.types), self.capabilities, self.limit, self.lease_seconds
        )


class Completer:
    def __init__(
        self,
        *,
        leases: LeaseRepository,
        task_log_repo: TaskLogRepository,
        table: AttemptTable,
        health: DatabaseHealth,
        metrics: WorkerMetrics,
        worker_id: str,
        clock: Clock,
        log: logging.LoggerAdapter[logging.Logger],
        notify: Callable[[], None] = lambda: None,
        flush_interval: float = FLUSH_INTERVAL_SECONDS,
    ) -> None:
        self._leases = leases
        self._task_log_repo = task_log_repo
        self._settings = leases.db.settings
        self._table = table
        self._health = health
        self._metrics = metrics
        self._worker_id = worker_id
        self._clock = clock
        self._log = log
        self.flush_interval = flush_interval
        self._notify = notify  # wakes the runtime, whose timer flushes
        self._armed = False
        self.task_logs = TaskLogBuffer()
        self._lock = threading.Lock()  # guards _pending
        self._flush_lock = threading.Lock()  # one flush (one write transaction) at a time
        self._pending: list[Attempt] = []
        self._oldest: float | None = None

    # --- pending outcomes ---

    def add(self, attempt: Attempt) -> None:
        """Take a FINISHED attempt; written with the next claim or timer flush."""
        with self._lock:
            if not self._pending:
                self._oldest = time.monotonic()
            self._pending.append(attempt)

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending)

    def arm(self) -> None:
        """No claim will write the pending outcomes soon: have the runtime's timer do it."""
        with self._lock:
            if not self._pending or self._armed:
                return
            self._armed = True
        self._notify()

    def due_in(self, now: float) -> float | None:
        """Seconds until the timer should flush on its own (None: nothing pending)."""
        with self._lock:
            if self._oldest is None:
                return None
            return max(0.0, self._oldest + self.flush_interval - now)

    def _take(self) -> list[Attempt]:
        with self._lock:
            batch, self._pending, self._oldest = self._pending, [], None
            self._armed = False
        ready: list[Attempt] = []
        later: list[Attempt] = []
        ids: set[int] = set()
        for attempt in batch:
            if attempt.ctx.lease_lost:
                self._discard_lost(attempt)
            elif attempt.task_id in ids:
                later.append(attempt)  # a task id at most once per batch: the next one
            elif self._table.move(attempt, AttemptState.FLUSHING, source=_FINISHED):
                ids.add(attempt.task_id)
                ready.append(attempt)
        if later:
            with self._lock:
                self._pending = [*later, *self._pending]
                self._oldest = self._oldest or time.monotonic()
        return ready

    def _put_back(self, attempts: Sequence[Attempt]) -> None:
        for attempt in attempts:
            self._table.move(attempt, AttemptState.FINISHED, source=_FLUSHING)
        with self._lock:
            self._pending = [*attempts, *self._pending]
            if self._pending and self._oldest is None:
                self._oldest = time.monotonic()

    # --- flushing ---

    def flush(self) -> bool:
        """Write what is pending, on its own; False when the database must be retried."""
        if not self._health.ready():
            return False
        with self._flush_lock:
            batch = self._take()
            if not batch and not len(self.task_logs):
                return True
            return self._write(batch, None)[0]

    def flush_and_claim(self, claim: ClaimArgs) -> list[ClaimedTask] | None:
        """Write what is pending and claim, in one transaction where the outcomes allow it;
        None when the database failed (the outcomes stay pending)."""
        with self._flush_lock:
            ok, claimed = self._write(self._take(), claim)
        return claimed if ok else None

    def flush_until(self, deadline: float) -> None:
        """At shutdown: retry until everything is written or ``deadline`` (monotonic)."""
        while len(self) and time.monotonic() < deadline:
            if not self._health.ready():
                time.sleep(min(self._health.remaining(), max(0.0, deadline - time.monotonic())))
            self.flush()
        self.flush_task_logs_quietly()

    def _write(
        self, batch: list[Attempt], claim: ClaimArgs | None
    ) -> tuple[bool, list[ClaimedTask]]:
        """One transaction: every outcome of ``batch`` (one guarded statement per kind), and
        the claim when there is one."""
        if not self._flush_task_logs():
            self._put_back(batch)
            return False, []
        outcomes = [self._transition(attempt) for attempt in batch]
        started = time.perf_counter()
        try:
            if claim is not None:
                applied, claimed = self._leases.apply_and_claim(
                    outcomes, claim.request(), strategy=claim.strategy
                )
                self._metrics.claim_seconds.observe(time.perf_counter() - started)
            else:
                applied, claimed = self._leases.apply(outcomes), []
        except Exception as exc:  # noqa: BLE001 - retried after the back-off
            self._health.failed("claim" if claim is not None else "complete", exc)
            self._put_back(batch)
            return False, []
        self._health.ok()
        self._applied(batch, outcomes, applied)
        return True, claimed

    def _transition(self, attempt: Attempt) -> Outcome:
        """The database transition an attempt's outcome asks for. A task whose cancellation
        was requested ends cancelled whatever is asked here (the guarded SQL decides)."""
        outcome = attempt.outcome
        kind = outcome.kind if outcome is not None else INTERRUPTED
        lease = attempt.lease
        if kind == RELEASED:
            return Released(lease, "worker shutting down")
        if kind == NOT_STARTED:
            return Cancelled(lease, "cancelled before it started")
        if kind == SUCCEEDED and outcome is not None:
            return Completed(lease, outcome.result)
        if attempt.ctx.cancel_requested:
            return Cancelled(lease)
        if kind == TIMED_OUT:
            error, permanent = f"timed out after {attempt.ctx.timeout_seconds:g} s", False
        elif kind == INTERRUPTED or outcome is None:
            error, permanent = "the handler was cancelled", False
        else:
            error, permanent = outcome.error or "failed", outcome.permanent
        return after_failure(
            attempt.task, error, permanent=permanent, now=self._clock(), settings=self._settings
        )

    def _applied(
        self, batch: Sequence[Attempt], outcomes: Sequence[Outcome], applied: Applied
    ) -> None:
        lost, cancelled = set(applied.lost), set(applied.cancelled)
        for attempt, outcome in zip(batch, outcomes, strict=True):
            task_id = attempt.task_id
            if task_id in lost:
                self._discard_lost(attempt)
                continue
            self._table.move(attempt, AttemptState.FLUSHED, source=_FLUSHING)
            task_type = attempt.type
            if task_id in cancelled or isinstance(outcome, Cancelled):
                self._metrics.cancelled.labels(task_type).inc()
                if isinstance(outcome, Cancelled) and outcome.reason != "cancelled by user":
                    attempt.log.info("task %s", outcome.reason)
                else:
                    attempt.log.info("task cancelled")
            elif isinstance(outcome, Completed):
                self._metrics.completed.labels(task_type).inc()
                attempt.log.debug("task completed")
            elif isinstance(outcome, Released):
                self._metrics.released.labels(task_type).inc()
                attempt.log.info("released unfinished (no attempt used)")
            else:
                status = applied.status.get(task_id, TaskStatus.FAILED)
                retry_at = outcome.at if isinstance(outcome, Retry) else None
                self._log_failure(attempt, outcome.error, status, retry_at)

    def _log_failure(self, attempt: Attempt, error: str, status: TaskStatus, retry_at: Any) -> None:
        exception = attempt.outcome.exception if attempt.outcome is not None else None
        exc_info = (type(exception), exception, exception.__traceback__) if exception else None
        task = attempt.task
        if status is TaskStatus.QUEUED:
            self._metrics.retried.labels(task.type).inc()
            attempt.log.warning(
                "attempt %d of %d failed (%s); retry at %s",
                task.attempt,
                task.max_attempts,
                error,
                retry_at.isoformat() if retry_at else "?",
                exc_info=exc_info,
            )
        else:
            self._metrics.failed.labels(task.type).inc()
            attempt.log.error(
                "task failed for good on attempt %d of %d: %s",
                task.attempt,
                task.max_attempts,
                error,
                exc_info=exc_info,
            )

    def _discard_lost(self, attempt: Attempt) -> None:
        """The lease is gone: whatever the handler produced is discarded (at-least-once)."""
        self._table.move(attempt, AttemptState.LOST, source=frozenset({*_FINISHED, *_FLUSHING}))
        self._metrics.lease_lost.labels(attempt.type).inc()
        attempt.log.warning("lease lost before the outcome was recorded; the result is discarded")
        # The task's history says why this run left no outcome (written with the next batch).
        self.task_logs.add(
            log_entry(
                attempt.task_id,
                "result discarded: the lease was lost",
                self._clock(),
                level="WARNING",
                event="lease_lost",
                worker_id=self._worker_id,
                attempt=attempt.task.attempt,
            )
        )

    # --- handler log records (task_logs) ---

    def _flush_task_logs(self) -> bool:
        entries = self.task_logs.take()
        if not entries:
            return True
        try:
            self._task_log_repo.add_many(entries)
        except Exception as exc:  # noqa: BLE001
            self.task_logs.put_back(entries)
            self._health.failed("write task logs", exc)
            return False
        return True

    def flush_task_logs_quietly(self) -> None:
        """The keeper's tick: write waiting handler log records; on failure, keep them."""
        entries = self.task_logs.take()
        if not entries:
            return
        try:
            self._task_log_repo.add_many(entries)
        except Exception:  # noqa: BLE001 - retried on the next tick or flush
            self.task_logs.put_back(entries)
