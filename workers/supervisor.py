"""The supervisor: what the thread that called ``Worker.run`` does while the slots work.

It sleeps on one queue (a ``None`` is a wake-up: a stop signal or request, a deadline to
watch, outcomes the completer's timer must write, a burst that ran dry) and, each time round:

- notices a stop: the executor drains (no more claims; prefetched tasks are given back),
  running handlers get ``--shutdown-grace`` seconds, then are given back too; a second
  signal gives back at once;
- enforces time limits;
- has the completer write outcomes that waited ``FLUSH_INTERVAL_SECONDS``;
- runs housekeeping (the sweep, maintenance) when due.

Signal handlers run between two bytecodes of the main thread, which may hold any lock: the
handler here only sets flags and calls ``SimpleQueue.put`` (re-entrant).
"""

from __future__ import annotations

import logging
import queue
import time
from contextlib import suppress

from workers.completer import Completer
from workers.config import WorkerConfig
from workers.defaults import FINAL_RECORD_SECONDS, IMMEDIATE_RECORD_SECONDS
from workers.executor import Executor
from workers.health import DatabaseHealth
from workers.housekeeping import Housekeeping
from workers.signals import signal_name


class Supervisor:
    def __init__(self, config: WorkerConfig, log: logging.LoggerAdapter[logging.Logger]) -> None:
        self.config = config
        self.log = log
        self._inbox: queue.SimpleQueue[None] = queue.SimpleQueue()
        self.stop_requested = False
        self._immediate = False
        self._grace_override: float | None = None
        self._signals: list[int] = []
        self.draining = False
        self._grace_deadline = float("inf")
        self._give_up_at = float("inf")

    # --- from any thread ---

    def notify(self) -> None:
        self._inbox.put(None)

    def request_stop(self, *, grace: float | None = None, immediate: bool = False) -> None:
        if grace is not None:
            self._grace_override = grace
        if immediate:
            self._immediate = True
        self.stop_requested = True
        self.notify()

    def on_signal(self, signum: int) -> None:
        """A stop signal: flags and a re-entrant put only (see the module doc)."""
        self._signals.append(signum)
        if len(self._signals) > 1:
            self._immediate = True
        self.stop_requested = True
        self._inbox.put(None)

    def wait(self, timeout: float) -> None:
        with suppress(queue.Empty):
            self._inbox.get(timeout=max(0.0, timeout))

    # --- the supervising thread ---

    def run(
        self,
        executor: Executor,
        completer: Completer,
        housekeeping: Housekeeping,
        health: DatabaseHealth,
    ) -> None:
        """Until the worker has stopped: drained, outcomes written (or given up on)."""
        while True:
            self._drain_inbox()
            now = time.monotonic()
            self._notice_stop(now, executor)
            executor.enforce_time_limits(now)
            if self.draining:
                if now >= self._grace_deadline:
                    executor.give_back_running()
                if len(completer):
                    completer.flush()
                if executor.idle and not len(completer):
                    return
                if time.monotonic() >= self._give_up_at:
                    self.log.error(
                        "giving up on recording %d outcome(s): the database is unavailable; "
                        "their leases expire and the tasks run again",
                        len(completer),
                    )
                    return
            else:
                due = completer.due_in(now)
                if due is not None and due <= 0:
                    completer.flush()
                housekeeping.run_due(now)
            self.wait(
                self._next_timeout(time.monotonic(), executor, completer, housekeeping, health)
            )

    def _next_timeout(
        self,
        now: float,
        executor: Executor,
        completer: Completer,
        housekeeping: Housekeeping,
        health: DatabaseHealth,
    ) -> float:
        timeout = self.config.poll_interval
        deadline = executor.next_deadline()
        if deadline is not None:
            timeout = min(timeout, deadline - now)
        due = completer.due_in(now)
        if due is not None:
            timeout = min(timeout, due)
        if self.draining:
            timeout = min(timeout, self._grace_deadline - now)
            if len(completer):
                timeout = min(timeout, max(health.remaining(), 0.001))
        else:
            timeout = min(timeout, housekeeping.due_in(now))
        if health.failing:
            timeout = min(timeout, max(health.remaining(), 0.001))
        return max(0.0, timeout)

    def _drain_inbox(self) -> None:
        while True:
            try:
                self._inbox.get_nowait()
            except queue.Empty:
                return

    def _grace(self) -> float:
        if self._grace_override is not None:
            return self._grace_override
        return self.config.shutdown_grace

    def _notice_stop(self, now: float, executor: Executor) -> None:
        if not self.draining:
            if self.stop_requested:
                reason = signal_name(self._signals[0]) if self._signals else "a stop request"
                self.log.info(
                    "stopping on %s: no new claims; waiting up to %g s for %d running task(s)",
                    reason,
                    self._grace(),
                    executor.busy,
                )
            elif executor.ran_dry:
                self.log.info("burst: no due task left; stopping")
            else:
                return
            self.draining = True
            self._grace_deadline = now + self._grace()
            self._give_up_at = self._grace_deadline + FINAL_RECORD_SECONDS
            executor.drain()
        if self._immediate and self._grace_deadline > now:
            self._grace_deadline = now
            self._give_up_at = now + IMMEDIATE_RECORD_SECONDS
            self.log.warning("stopping at once: releasing running tasks")
