"""The executor: ``--concurrency`` slots, each a thread that runs one attempt at a time.

A slot takes the next claimed attempt from the executor's queue. When the queue is empty,
the slot becomes the fetcher for a round: it writes pending outcomes and claims more in one
transaction, then runs what it claimed itself. So at ``--concurrency 1`` a sync handler runs
on the thread that claimed it, and no thread hand-off happens per task. Async handlers run on
one shared event loop; their slot waits for them.

Only one slot fetches at a time; the others wait on the executor's condition. While nothing
is due, the fetching slot waits on :class:`~workers.wakeup.WorkSignal`; a slot that finishes
meanwhile wakes it, so its outcome is written with the next claim at once. After a task it
claims again at once, then backs off to the poll interval; once fully idle it may sleep until
the next task is due (:meth:`Fetcher.idle_wait`), when announcements of new work reach it.

A thread cannot be killed: a slot whose handler overran its time limit (or that the worker
stops waiting for at shutdown) is *retired*, a new slot thread takes its place, and the old
thread exits whenever the handler returns, its result discarded. Async handlers are also
cancelled.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from queue_core.settings import IDLE_BACKOFF_MIN_SECONDS
from workers.attempt import Attempt, AttemptState, AttemptTable
from workers.completer import Completer
from workers.execution import (
    NOT_STARTED,
    RELEASED,
    TIMED_OUT,
    AsyncRunner,
    Execution,
    Outcome,
)
from workers.fetcher import Fetcher
from workers.health import DatabaseHealth
from workers.metrics import WorkerMetrics
from workers.wakeup import WorkSignal

_QUEUED = frozenset({AttemptState.QUEUED})


class _Slot:
    def __init__(self, number: int) -> None:
        self.number = number
        self.attempt: Attempt | None = None
        self.retired = False
        self.thread: threading.Thread | None = None


class Executor:
    def __init__(
        self,
        *,
        concurrency: int,
        table: AttemptTable,
        fetcher: Fetcher,
        completer: Completer,
        health: DatabaseHealth,
        work: WorkSignal,
        metrics: WorkerMetrics,
        result_limit_bytes: int,
        poll_interval: float,
        burst: bool,
        notify: Callable[[], None],
    ) -> None:
        self.concurrency = concurrency
        self._table = table
        self._fetcher = fetcher
        self._completer = completer
        self._health = health
        self._work = work
        self._metrics = metrics
        self._result_limit_bytes = result_limit_bytes
        self._poll_interval = poll_interval
        self._burst = burst
        self._notify = notify  # wakes the runtime (a deadline to watch, a burst ran dry)
        self._cond = threading.Condition()
        self._queue: deque[Attempt] = deque()
        self._slots: list[_Slot] = []
        self._serial = 0
        self._busy = 0
        self._fetching = False
        self._idle_waiting = False
        self._draining = False
        self._closed = False
        self.ran_dry = False  # burst: a round found nothing and nothing is left to do
        self._runner = AsyncRunner()

    # --- control (the runtime's thread) ---

    def start(self) -> None:
        with self._cond:
            for _ in range(self.concurrency):
                self._spawn_locked()

    def _spawn_locked(self) -> None:
        self._serial += 1
        slot = _Slot(self._serial)
        slot.thread = threading.Thread(
            target=self._serve, args=(slot,), name=f"prismq-slot-{slot.number}", daemon=True
        )
        self._slots = [s for s in self._slots if not s.retired] + [slot]
        slot.thread.start()

    @property
    def busy(self) -> int:
        """Handlers running now (retired ones not counted)."""
        return self._busy

    @property
    def idle(self) -> bool:
        """No handler runs and no claim is in flight."""
        with self._cond:
            return self._busy == 0 and not self._fetching

    def drain(self) -> None:
        """Stop claiming; give back what waits in the queue; let running handlers finish."""
        with self._cond:
            self._draining = True
            queued = list(self._queue)
            self._queue.clear()
            self._cond.notify_all()
        self._work.wake()
        for attempt in queued:
            self._end(attempt, Outcome(RELEASED))

    def give_back_running(self) -> None:
        """Stop waiting for running handlers: their tasks are released unfinished."""
        for slot in list(self._slots):
            self._retire(slot, Outcome(RELEASED), replace=False)

    def close(self, timeout: float = 1.0) -> None:
        with self._cond:
            self._closed = True
            self._draining = True
            self._cond.notify_all()
        self._work.wake()
        deadline = time.monotonic() + timeout
        for slot in list(self._slots):
            if slot.thread is not None and not slot.retired:
                slot.thread.join(max(0.0, deadline - time.monotonic()))
        self._runner.close(timeout)

    def next_deadline(self) -> float | None:
        with self._cond:
            deadlines = [
                s.attempt.deadline
                for s in self._slots
                if s.attempt is not None and s.attempt.deadline is not None
            ]
        return min(deadlines) if deadlines else None

    def enforce_time_limits(self, now: float) -> None:
        with self._cond:
            overdue = [
                s
                for s in self._slots
                if s.attempt is not None
                and s.attempt.deadline is not None
                and now >= s.attempt.deadline
            ]
        for slot in overdue:
            attempt = slot.attempt
            if attempt is None or not self._retire(slot, Outcome(TIMED_OUT), replace=True):
                continue
            attempt.ctx._time_out()
            self._metrics.timed_out.labels(attempt.type).inc()
            if attempt.started is not None:
                self._fetcher.observe(attempt, now - attempt.started)
            attempt.log.warning(
                "time limit of %g s exceeded; the attempt fails%s",
                attempt.ctx.timeout_seconds,
                ""
                if attempt.handler.is_async
                else " (its thread cannot be stopped; its result will be discarded)",
            )

    def interrupt(self, attempt: Attempt) -> None:
        """Ask an async handler to stop now (sync handlers see ``ctx.should_stop``)."""
        execution = attempt.execution
        if execution is not None and attempt.handler.is_async and not execution.interrupted:
            self._runner.cancel(execution)

    def _retire(self, slot: _Slot, outcome: Outcome, *, replace: bool) -> bool:
        with self._cond:
            attempt = slot.attempt
            if attempt is None or slot.retired or not self._table.finish(attempt, outcome):
                return False
            slot.retired = True
            slot.attempt = None
            self._busy -= 1
            if replace and not self._draining:
                self._spawn_locked()
            self._cond.notify_all()
        self._metrics.running.dec()
        if attempt.execution is not None and attempt.handler.is_async:
            self._runner.cancel(attempt.execution)
        self._completer.add(attempt)
        return True

    # --- a slot's thread ---

    def _serve(self, slot: _Slot) -> None:
        while True:
            attempt = self._next(slot)
            if attempt is None:
                return
            self._run(slot, attempt)
            if slot.retired:
                return

    def _next(self, slot: _Slot) -> Attempt | None:
        """The next attempt for ``slot`` to run (fetching a round when none is queued);
        None when the slot should exit."""
        while True:
            stopped: Attempt | None = None
            with self._cond:
                while True:
                    if slot.retired or self._closed or (self._draining and not self._queue):
                        return None
                    if self._queue:
                        attempt = self._queue.popleft()
                        if attempt.ctx.should_stop:
                            stopped = attempt  # cancelled or lost before it started
                            break
                        self._table.move(attempt, AttemptState.RUNNING, source=_QUEUED)
                        slot.attempt = attempt
                        self._busy += 1
                        return attempt
                    if not self._fetching and self._health.ready():
                        self._fetching = True
                        break
                    self._cond.wait(self._health.remaining() or self._poll_interval)
            if stopped is not None:
                self._end(stopped, Outcome(NOT_STARTED))  # never started
            else:
                self._fetch_round()

    def _run(self, slot: _Slot, attempt: Attempt) -> None:
        now = time.monotonic()
        attempt.started = now
        if attempt.timeout:
            attempt.deadline = now + attempt.timeout
            self._notify()  # the runtime watches the deadline
        if len(self._completer):
            self._completer.arm()  # no claim comes before this task ends: the timer writes
        self._metrics.running.inc()
        attempt.log.debug(
            "task started (attempt %d of %d)", attempt.task.attempt, attempt.task.max_attempts
        )
        execution = Execution(
            attempt.handler,
            attempt.task.payload,
            attempt.ctx,
            result_limit_bytes=self._result_limit_bytes,
        )
        attempt.execution = execution
        outcome = self._runner.run(execution) if attempt.handler.is_async else execution.run_sync()
        with self._cond:
            if slot.retired:
                attempt.log.debug("a late result of an abandoned handler was discarded")
                return
            slot.attempt = None
            self._busy -= 1
            finished = self._table.finish(attempt, outcome)
            if self._draining:
                self._notify()
            elif self._idle_waiting:
                self._work.wake()  # the waiting fetcher writes this outcome with a claim now
        self._metrics.running.dec()
        self._fetcher.observe(attempt, outcome.duration)
        if finished:
            self._completer.add(attempt)

    def _end(self, attempt: Attempt, outcome: Outcome) -> None:
        """An attempt that never ran: given back at shutdown, or stopped before it started."""
        if self._table.finish(attempt, outcome):
            self._completer.add(attempt)

    def _fetch_round(self) -> None:
        """Claim for the free slots (plus prefetch); wait for work while there is none."""
        idle_delay = IDLE_BACKOFF_MIN_SECONDS
        try:
            while True:
                with self._cond:
                    if self._draining or self._closed:
                        return
                    free = self.concurrency - self._busy - len(self._queue)
                if free <= 0:
                    return
                attempts = self._fetcher.fetch(free)
                if attempts is None:
                    return  # the database failed: slots wait for the back-off
                if attempts:
                    for attempt in attempts:
                        self._table.add(attempt)
                    with self._cond:
                        late = self._draining
                        if not late:
                            self._queue.extend(attempts)
                            self._cond.notify_all()
                    for attempt in attempts if late else []:
                        self._end(attempt, Outcome(RELEASED))  # the worker stopped meanwhile
                    return
                if len(self._completer):
                    continue  # finished meanwhile: write it with the next claim now
                if self._burst:
                    with self._cond:
                        if self._busy == 0 and not self._queue and not len(self._completer):
                            self.ran_dry = True
                            self._draining = True
                            self._notify()
                            return
                if idle_delay >= self._poll_interval:  # fully idle: maybe sleep longer
                    idle_delay = self._fetcher.idle_wait(self._poll_interval, self._work.listening)
                with self._cond:
                    self._idle_waiting = True
                try:
                    self._work.wait(idle_delay)
                finally:
                    with self._cond:
                        self._idle_waiting = False
                idle_delay = min(idle_delay * 2, self._poll_interval)
        finally:
            with self._cond:
                self._fetching = False
                self._cond.notify_all()
