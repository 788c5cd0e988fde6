"""The fetcher: claims work for the executor, in one transaction per round.

A round claims up to (free slots + prefetch) tasks at once, whatever ``--concurrency`` is,
and writes the completer's pending outcomes in the same transaction
(:meth:`Completer.flush_and_claim`). Prefetched tasks wait in the executor's queue (their
leases are renewed like running ones) and start the moment a slot frees, with no database
round trip in between.

Prefetch must never make a long task wait: a GPU job of minutes prefetched behind another one
would sit idle while another worker has nothing to do. So prefetch adapts per task type: it
keeps an exponentially weighted moving average of each type's handler durations, and
prefetches only types whose average is known and short, only as many tasks as fit the
``PREFETCH_WAIT_BUDGET_SECONDS`` a prefetched task may wait. A type never seen yet is not
prefetched. ``--prefetch 0`` switches it off entirely.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

from queue_core.claims import ClaimedTask
from queue_core.clock import Clock
from queue_core.repositories.leases import LeaseRepository
from queue_core.settings import IDLE_SLEEP_MAX_SECONDS
from workers.attempt import Attempt
from workers.completer import ClaimArgs, Completer
from workers.config import WorkerConfig
from workers.context import TaskContext
from workers.defaults import (
    DURATION_EWMA_WEIGHT,
    PREFETCH_RECHECK_SECONDS,
    PREFETCH_WAIT_BUDGET_SECONDS,
    TASK_LOGGER,
)
from workers.metrics import WorkerMetrics
from workers.registry import Registry
from workers.tasklog import ContextAdapter, TaskLogger


class DurationStats:
    """An exponentially weighted moving average of handler durations, per task type."""

    def __init__(self, weight: float = DURATION_EWMA_WEIGHT) -> None:
        self._weight = weight
        self._lock = threading.Lock()
        self._average: dict[str, float] = {}

    def observe(self, task_type: str, seconds: float) -> None:
        with self._lock:
            previous = self._average.get(task_type)
            self._average[task_type] = (
                seconds if previous is None else previous + self._weight * (seconds - previous)
            )

    def average(self, task_type: str) -> float | None:
        with self._lock:
            return self._average.get(task_type)


class Fetcher:
    def __init__(
        self,
        *,
        config: WorkerConfig,
        worker_id: str,
        types: Sequence[str],
        registry: Registry,
        completer: Completer,
        leases: LeaseRepository,
        metrics: WorkerMetrics,
        clock: Clock,
        log: ContextAdapter,
    ) -> None:
        self.config = config
        self.worker_id = worker_id
        self.types = list(types)
        self.registry = registry
        self.completer = completer
        self.leases = leases
        self.metrics = metrics
        self.clock = clock
        self.log = log
        self.durations = DurationStats()
        self._quiet = 0.0  # no separate prefetch claim before this (monotonic)

    # --- how much to claim ---

    def prefetch_plan(self) -> tuple[int, list[str]]:
        """(how many tasks to prefetch beyond the free slots, of which types)."""
        prefetch = self.config.prefetch
        if prefetch <= 0:
            return 0, []
        # Prefetched tasks spread over every slot: each waits about count x average / slots.
        budget = PREFETCH_WAIT_BUDGET_SECONDS * self.config.concurrency
        averages = {t: self.durations.average(t) for t in self.types}
        short = {t: a for t, a in averages.items() if a is not None and a <= budget}
        if not short:
            return 0, []
        slowest = max(short.values())
        count = prefetch if slowest <= 0 else min(prefetch, int(budget / slowest))
        return count, sorted(short)

    def _args(self, types: Sequence[str], limit: int) -> ClaimArgs:
        config = self.config
        return ClaimArgs(
            worker_id=self.worker_id,
            types=list(types),
            limit=limit,
            capabilities=dict(config.capabilities),
            lease_seconds=config.lease_seconds,
            strategy=str(config.strategy),
        )

    # --- one round ---

    def fetch(self, free: int) -> list[Attempt] | None:
        """Write pending outcomes and claim for ``free`` slots plus prefetch; None when the
        database failed (the caller waits for the back-off)."""
        extra, short = self.prefetch_plan()
        everything = extra > 0 and len(short) == len(self.types)
        limit = free + extra if everything else free
        tasks = self.completer.flush_and_claim(self._args(self.types, limit))
        if tasks is None:
            return None
        if extra and not everything and len(tasks) >= free and time.monotonic() >= self._quiet:
            # Some types are long (or new): prefetch only the short ones, in a claim of their
            # own. When none were due, leave it for a while rather than pay for it each round.
            more = self.completer.flush_and_claim(self._args(short, extra)) or []
            if not more:
                self._quiet = time.monotonic() + PREFETCH_RECHECK_SECONDS
            tasks = tasks + more
        for task in tasks:
            self.metrics.claimed.labels(task.type).inc()
        return [self._attempt(task) for task in tasks]

    def idle_wait(self, poll_interval: float, listening: bool) -> float:
        """How long a fully idle worker sleeps unless woken: the poll interval, unless every
        announcement of new work reaches it (``listening``) and nothing is due; then until
        the earliest task is due, at most IDLE_SLEEP_MAX_SECONDS (or the poll interval, when
        longer). Due work it could not claim (other types, limits, capabilities, a pause)
        keeps it polling: no announcement comes when a limit frees up."""
        if not listening:
            return poll_interval
        longest = max(poll_interval, IDLE_SLEEP_MAX_SECONDS)
        try:
            due = self.leases.next_due()
        except Exception:  # noqa: BLE001 - the next claim meets the trouble and backs off
            return poll_interval
        if due is None:
            return longest
        seconds = (due - self.clock()).total_seconds()
        return poll_interval if seconds <= 0 else min(seconds, longest)

    def observe(self, attempt: Attempt, seconds: float) -> None:
        """A handler ran ``seconds`` (returned, raised or overran its limit)."""
        self.durations.observe(attempt.type, seconds)
        self.metrics.run_seconds.labels(attempt.type).observe(seconds)

    def _attempt(self, task: ClaimedTask) -> Attempt:
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
                buffer=self.completer.task_logs,
                task_id=task.task_id,
                record_level=config.task_log_level,
                clock=self.clock,
            ),
        )
        if task.cancel_requested:
            ctx._request_cancel()
        return Attempt(
            task=task,
            handler=self.registry.get(task.type),
            ctx=ctx,
            log=ContextAdapter(self.log.logger, context),
            timeout=limit,
        )
