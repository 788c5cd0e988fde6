"""LeaseRepository: the lease lifecycle a worker drives.

claim → (renew)* → an outcome (completed, retry, failed, released, cancelled), and recovery of
expired leases. Thin: the claim is the dialect's statement, and every transition after it goes
through :mod:`queue_core.transitions` (one guarded statement per outcome kind per batch, one
task_logs INSERT), on the hot path's DBAPI connection.

Every transition after the claim is guarded by ``id``, ``status = 'leased'``, ``locked_by``
and ``lease_token``. The token is bumped at each claim and never reused, so a worker whose
lease expired and whose task was since recovered, re-claimed (even by the same worker id),
completed or cancelled matches no row, gets :class:`LeaseLost` (or the id in
``Applied.lost``), and changes nothing.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, select, text

from queue_core.audit import log_entry
from queue_core.claims import ClaimedTask, ClaimRequest, Lease
from queue_core.clock import Clock, ensure_utc, utcnow
from queue_core.database import Database
from queue_core.dialects import GuardedRow
from queue_core.dialects.claiming import TaskClaimer
from queue_core.errors import LeaseLost
from queue_core.models import CLAIMABLE
from queue_core.repositories._common import TASKS
from queue_core.settings import LEASE_SECONDS_DEFAULT
from queue_core.states import STRATEGY_DEFAULT, SchedulingStrategy, TaskStatus
from queue_core.transitions import (
    Applied,
    Cancelled,
    Completed,
    Failed,
    Outcome,
    Recovered,
    Released,
    Retry,
    apply_outcomes,
    apply_recovered,
    backoff_at,
    retry_delay,
)

RECOVERY_BATCH = 500

__all__ = [
    "FailOutcome",
    "LeaseRepository",
    "RecoveryReport",
    "RenewResult",
    "retry_delay",
]


@dataclass(frozen=True)
class RenewResult:
    lease_until_utc: datetime
    cancel_requested: bool


@dataclass(frozen=True)
class FailOutcome:
    status: TaskStatus
    run_after_utc: datetime | None
    """When the retry is due; None when the task failed for good (dead letter)."""


@dataclass
class RecoveryReport:
    requeued: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    cancelled: list[int] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.requeued) + len(self.failed) + len(self.cancelled)

    def merge(self, other: RecoveryReport) -> RecoveryReport:
        self.requeued += other.requeued
        self.failed += other.failed
        self.cancelled += other.cancelled
        return self

    @classmethod
    def of(cls, applied: Applied) -> RecoveryReport:
        report = cls()
        buckets = {
            TaskStatus.QUEUED: report.requeued,
            TaskStatus.FAILED: report.failed,
            TaskStatus.CANCELLED: report.cancelled,
        }
        for task_id, status in applied.status.items():
            buckets[status].append(task_id)
        return report


# The claim indexes' own condition, written out, so the planner takes ix_task_queue_due_fifo
# (tests/queue_core/test_explain.py).
NEXT_DUE = select(func.min(TASKS.c.run_after_utc)).where(text(CLAIMABLE))


class LeaseRepository:
    def __init__(
        self, db: Database, clock: Clock = utcnow, rng: random.Random | None = None
    ) -> None:
        self.db = db
        self.clock = clock
        self.rng = rng or random.Random()
        self._claimers: dict[SchedulingStrategy, TaskClaimer] = {}
        self.dialect = db.dialect
        self.logs = db.log_writer
        sql = db.dialect.sql
        # Everything runs on the hot path's DBAPI connection (dialects/connections.py says why).
        self._raw = db.raw
        self._expired_sql = sql.dbapi_sql(sql.EXPIRED_SELECT_SQL)
        self._held_by_sql = sql.dbapi_sql(sql.HELD_BY_SELECT_SQL)
        self._heartbeat_sql = sql.dbapi_sql(sql.HEARTBEAT_SQL)

    def claimer(self, strategy: SchedulingStrategy | str) -> TaskClaimer:
        strategy = SchedulingStrategy(strategy)
        if strategy not in self._claimers:
            self._claimers[strategy] = self.dialect.claimer(strategy, self.rng)
        return self._claimers[strategy]

    # --- claim ---

    def claim(
        self,
        worker_id: str,
        types: Sequence[str],
        *,
        capabilities: Mapping[str, Any] | None = None,
        limit: int = 1,
        lease_seconds: float = LEASE_SECONDS_DEFAULT,
        strategy: SchedulingStrategy | str = STRATEGY_DEFAULT,
    ) -> list[ClaimedTask]:
        """Lease up to ``limit`` due tasks of ``types`` that ``capabilities`` satisfy."""
        request = ClaimRequest(
            worker_id, list(types), dict(capabilities or {}), limit, lease_seconds
        )
        return self.apply_and_claim([], request, strategy=strategy)[1]

    def apply_and_claim(
        self,
        outcomes: Sequence[Outcome],
        request: ClaimRequest,
        limit: int | None = None,
        strategy: SchedulingStrategy | str = STRATEGY_DEFAULT,
    ) -> tuple[Applied, list[ClaimedTask]]:
        """``apply(outcomes)`` then a claim of up to ``limit`` (default ``request.limit``)
        tasks, in ONE transaction: a busy worker commits once per round."""
        if limit is not None:
            request = ClaimRequest(
                request.worker_id,
                request.types,
                request.capabilities,
                limit,
                request.lease_seconds,
            )
        claimer = self.claimer(strategy)
        now = self.clock()
        with self._raw.transaction() as cursor:
            applied = apply_outcomes(self.dialect, self.logs, cursor, outcomes, now)
            return applied, self._claim_in(cursor, claimer, request, now)

    def complete_and_claim(
        self,
        outcomes: Sequence[tuple[Lease, Any]],
        worker_id: str,
        types: Sequence[str],
        *,
        capabilities: Mapping[str, Any] | None = None,
        limit: int = 1,
        lease_seconds: float = LEASE_SECONDS_DEFAULT,
        strategy: SchedulingStrategy | str = STRATEGY_DEFAULT,
    ) -> tuple[list[int], list[ClaimedTask]]:
        """Complete ``outcomes`` then claim, in one transaction (``apply_and_claim`` with
        Completed outcomes). Returns (ids whose lease was lost, claimed)."""
        request = ClaimRequest(
            worker_id, list(types), dict(capabilities or {}), limit, lease_seconds
        )
        applied, claimed = self.apply_and_claim(
            [Completed(lease, result) for lease, result in outcomes], request, strategy=strategy
        )
        return applied.lost, claimed

    def _claim_in(
        self, cursor: Any, claimer: TaskClaimer, request: ClaimRequest, now: datetime
    ) -> list[ClaimedTask]:
        claimed = claimer.claim(cursor, request, now)
        if claimed and self.logs.routine:
            self.logs.write(
                cursor,
                [
                    log_entry(
                        task.task_id,
                        "leased",
                        now,
                        event="leased",
                        worker_id=request.worker_id,
                        attempt=task.attempt,
                        lease_until_utc=task.lease_until_utc.isoformat(),
                    )
                    for task in claimed
                ],
            )
        return claimed

    def next_due(self) -> datetime | None:
        """When the earliest claimable task of any type is due (None when there is none):
        one read of ix_task_queue_due_fifo's first entry, what an idle worker asks before it
        sleeps (workers/fetcher.py)."""
        with self.db.read() as conn:
            due = conn.execute(NEXT_DUE).scalar()
        return ensure_utc(due) if due is not None else None

    # --- outcomes ---

    def apply(self, outcomes: Sequence[Outcome]) -> Applied:
        """Apply outcomes in one transaction: one guarded statement per outcome kind and one
        task_logs INSERT (:mod:`queue_core.transitions`)."""
        if not outcomes:
            return Applied()
        now = self.clock()
        with self._raw.transaction() as cursor:
            return apply_outcomes(self.dialect, self.logs, cursor, outcomes, now)

    def _apply_one(self, outcome: Outcome) -> TaskStatus:
        applied = self.apply([outcome])
        if applied.lost:
            raise LeaseLost(outcome.lease.task_id, outcome.lease.worker_id)
        return applied.status[outcome.lease.task_id]

    def complete(self, lease: Lease, result: Any = None) -> None:
        self._apply_one(Completed(lease, result))

    def complete_many(self, outcomes: Sequence[tuple[Lease, Any]]) -> list[int]:
        """Complete several tasks in one transaction; returns the ids whose lease was lost."""
        return self.apply([Completed(lease, result) for lease, result in outcomes]).lost

    def fail(self, lease: Lease, error: str, *, permanent: bool = False) -> FailOutcome:
        """Retry with back-off while attempts remain; otherwise (or if ``permanent``) the task
        fails for good: the dead-letter state. (The guarded statement decides whether
        attempts remain: the lease carries no max_attempts; see ``transitions.after_failure``
        for the decision made from a claimed task.)"""
        if permanent:
            status = self._apply_one(Failed(lease, error, permanent=True))
            return FailOutcome(status, None)
        retry_at = backoff_at(lease.attempt, self.clock(), self.db.settings, self.rng)
        status = self._apply_one(Retry(lease, error, retry_at))
        return FailOutcome(status, retry_at if status is TaskStatus.QUEUED else None)

    def release(self, lease: Lease, reason: str = "worker shutting down") -> None:
        """Give the task back without using up an attempt (graceful shutdown). A task whose
        cancellation was requested ends cancelled instead."""
        self._apply_one(Released(lease, reason))

    def mark_cancelled(self, lease: Lease, reason: str = "cancelled by user") -> None:
        """End a running task whose cancellation was requested."""
        self._apply_one(Cancelled(lease, reason))

    # --- while running ---

    def renew(self, lease: Lease, lease_seconds: float, *, log: bool = False) -> RenewResult:
        results = self.renew_many(
            lease.worker_id, [lease], lease_seconds, log_task_ids=[lease.task_id] if log else ()
        )
        if lease.task_id not in results:
            raise LeaseLost(lease.task_id, lease.worker_id)
        return results[lease.task_id]

    def renew_many(
        self,
        worker_id: str,
        leases: Sequence[Lease],
        lease_seconds: float,
        *,
        log_task_ids: Iterable[int] = (),
        heartbeat: bool = False,
    ) -> dict[int, RenewResult]:
        """Extend the leases this worker still holds, in one guarded statement; with
        ``heartbeat``, also record the worker's heartbeat in the same transaction. Leases
        missing from the result are lost. The token is checked too: a stale holder whose task
        was re-claimed by the same worker id must not extend the new lease."""
        now = self.clock()
        lease_until = now + timedelta(seconds=lease_seconds)
        to_log = set(log_task_ids)
        held: dict[int, RenewResult] = {}
        if not leases and not heartbeat:
            return held
        with self._raw.transaction() as cursor:
            rows = self.dialect.set_state_if_leased_many(
                cursor,
                "renew",
                [GuardedRow(lease.task_id, worker_id, lease.lease_token) for lease in leases],
                now,
                lease_until,
            )
            held = {row.task_id: RenewResult(lease_until, row.cancel_requested) for row in rows}
            self.logs.write(
                cursor,
                [
                    log_entry(
                        task_id,
                        "lease renewed",
                        now,
                        level="DEBUG",
                        event="renewed",
                        worker_id=worker_id,
                        lease_until_utc=lease_until.isoformat(),
                    )
                    for task_id in held
                    if task_id in to_log
                ],
            )
            if heartbeat:
                cursor.execute(
                    self._heartbeat_sql,
                    {"worker_id": worker_id, "now": self.dialect.sql.bind_time(now)},
                )
        return held

    def is_cancel_requested(self, lease: Lease) -> bool:
        with self.db.read() as conn:
            value = conn.execute(
                select(TASKS.c.cancel_requested).where(
                    and_(
                        TASKS.c.id == lease.task_id,
                        TASKS.c.status == TaskStatus.LEASED.value,
                        TASKS.c.locked_by == lease.worker_id,
                        TASKS.c.lease_token == lease.lease_token,
                    )
                )
            ).scalar()
        if value is None:
            raise LeaseLost(lease.task_id, lease.worker_id)
        return bool(value)

    # --- recovery ---

    def recover_expired(self, limit: int = RECOVERY_BATCH) -> RecoveryReport:
        """Put tasks whose lease expired back to queued, or to failed when no attempts are
        left (cancelled when cancellation had been requested). Safe to run from many workers
        at once: each row is re-checked by token and expiry in the same statement."""
        now = self.clock()
        params = {"now": self.dialect.sql.bind_time(now), "limit": limit}
        return self._recover(self._expired_sql, params, now, "lease expired", expired=True)

    def release_worker_tasks(self, worker_id: str, reason: str) -> RecoveryReport:
        """Recover every task a (stale) worker holds, whatever its lease says."""
        now = self.clock()
        params = {"worker_id": worker_id, "limit": RECOVERY_BATCH}
        return self._recover(self._held_by_sql, params, now, reason, expired=False)

    def _recover(
        self, select_sql: str, params: dict[str, Any], now: datetime, reason: str, *, expired: bool
    ) -> RecoveryReport:
        with self._raw.transaction() as cursor:
            cursor.execute(select_sql, params)
            # Columns: id, lease_token, locked_by, attempts, max_attempts, cancel_requested.
            recovered = [
                Recovered(row[0], row[1], row[2], row[3], row[4], reason, expired)
                for row in cursor.fetchall()
            ]
            applied = apply_recovered(self.dialect, self.logs, cursor, recovered, now)
            report = RecoveryReport.of(applied)
            if report.requeued:
                self.dialect.notify_new_tasks_raw(cursor)
        return report
