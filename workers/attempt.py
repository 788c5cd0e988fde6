"""Attempt: one claimed task inside a worker, from its claim until its outcome is recorded.

Its life is one small state machine (:class:`AttemptState`)::

    QUEUED ──start──▶ RUNNING ──finish(outcome)──▶ FINISHED ──▶ FLUSHING ──▶ FLUSHED
       │                                             ▲   ▲         │   └──▶ LOST
       └──────────── finish(never started) ──────────┘   └─retry───┘

- QUEUED: claimed (or prefetched) and waiting in the executor for a free slot.
- RUNNING: its handler runs in a slot.
- FINISHED: its outcome is decided (returned, raised, timed out, given back, cancelled
  before it started) and waits in the completer.
- FLUSHING: the completer is writing it right now (renewals leave it alone meanwhile).
- FLUSHED / LOST: written; or its lease was gone and the outcome was discarded.

Every transition happens under :class:`AttemptTable`'s lock, so the executor, the completer
and the lease keeper (three threads) agree on where each attempt is.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from queue_core.claims import ClaimedTask, Lease
from queue_core.repositories import RenewResult
from workers.context import TaskContext
from workers.execution import Execution, Outcome
from workers.registry import Handler
from workers.tasklog import ContextAdapter


class AttemptState(enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    FLUSHING = "flushing"
    FLUSHED = "flushed"
    LOST = "lost"


# States whose lease the worker still holds and renews.
HELD = frozenset({AttemptState.QUEUED, AttemptState.RUNNING, AttemptState.FINISHED})


@dataclass(eq=False)
class Attempt:
    """One claimed task inside this worker, from claim until its outcome is recorded."""

    task: ClaimedTask
    handler: Handler
    ctx: TaskContext
    log: ContextAdapter
    timeout: float | None
    state: AttemptState = AttemptState.QUEUED
    started: float | None = None
    deadline: float | None = None
    execution: Execution | None = None
    outcome: Outcome | None = field(default=None)

    @property
    def lease(self) -> Lease:
        return self.task.lease

    @property
    def task_id(self) -> int:
        return self.task.task_id

    @property
    def type(self) -> str:
        return self.task.type


class AttemptTable:
    """Every attempt this worker holds, keyed by lease (not task id: a task whose lease was
    lost may be claimed by this worker again while its first handler still runs)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._attempts: dict[Lease, Attempt] = {}

    def add(self, attempt: Attempt) -> None:
        with self.lock:
            self._attempts[attempt.lease] = attempt

    def move(self, attempt: Attempt, to: AttemptState, *, source: frozenset[AttemptState]) -> bool:
        """Move ``attempt`` to ``to`` if it is in one of ``source``; False when it was not."""
        with self.lock:
            if attempt.state not in source:
                return False
            attempt.state = to
            if to in (AttemptState.FLUSHED, AttemptState.LOST):
                self._attempts.pop(attempt.lease, None)
            return True

    def finish(self, attempt: Attempt, outcome: Outcome) -> bool:
        """QUEUED/RUNNING -> FINISHED with ``outcome``, once; False if it had finished already."""
        with self.lock:
            if attempt.state not in (AttemptState.QUEUED, AttemptState.RUNNING):
                return False
            attempt.outcome = outcome
            attempt.state = AttemptState.FINISHED
            return True

    def held_leases(self) -> list[Lease]:
        with self.lock:
            return [a.lease for a in self._attempts.values() if a.state in HELD]

    def in_state(self, *states: AttemptState) -> list[Attempt]:
        with self.lock:
            return [a for a in self._attempts.values() if a.state in states]

    def __len__(self) -> int:
        with self.lock:
            return len(self._attempts)

    def apply_renewal(
        self, leases: Sequence[Lease], renewed: dict[int, RenewResult]
    ) -> list[Attempt]:
        """Mark lost leases and requested cancellations; returns the attempts whose handler
        should be told to stop (the caller wakes the executor for them)."""
        stopped: list[Attempt] = []
        with self.lock:
            for lease in leases:
                attempt = self._attempts.get(lease)
                if attempt is None or attempt.state not in HELD:
                    continue  # recorded meanwhile, or being recorded right now
                result = renewed.get(lease.task_id)
                if result is None:
                    if not attempt.ctx.lease_lost:
                        attempt.ctx._lose_lease()
                        attempt.log.warning("lease lost: another worker may run this task")
                        stopped.append(attempt)
                elif result.cancel_requested and not attempt.ctx.cancel_requested:
                    attempt.ctx._request_cancel()
                    attempt.log.info("cancellation requested")
                    stopped.append(attempt)
        return stopped
