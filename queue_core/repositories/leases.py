"""LeaseRepository: the lease lifecycle a worker drives.

claim → (renew)* → complete | fail | release | cancelled, and recovery of expired leases.

Every transition after the claim is guarded by ``id``, ``status = 'leased'``, ``locked_by``
and ``lease_token``. The token is bumped at each claim and never reused, so a worker whose
lease expired and whose task was since recovered, re-claimed (even by the same worker id),
completed or cancelled matches no row, gets :class:`LeaseLost`, and changes nothing.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, bindparam, case, literal, text, true, tuple_, update
from sqlalchemy.sql import ColumnElement

from queue_core.claims import ClaimedTask, ClaimRequest, Lease
from queue_core.clock import Clock, utcnow
from queue_core.database import Database
from queue_core.dialects.claiming import TaskClaimer
from queue_core.errors import LeaseLost
from queue_core.repositories._common import TASKS, WORKERS, jittered, log_entry, write_logs
from queue_core.settings import (
    LEASE_SECONDS_DEFAULT,
    RETRY_JITTER_FRACTION,
)
from queue_core.states import STRATEGY_DEFAULT, SchedulingStrategy, TaskStatus
from queue_core.types import UtcDateTime

LEASED = TaskStatus.LEASED.value
RECOVERY_BATCH = 500


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


def retry_delay(attempt: int, base: float, cap: float) -> float:
    """CONTRACT §4: min(base * 2^(attempt-1), cap), before jitter."""
    return float(min(base * 2 ** max(attempt - 1, 0), cap))


def _at(instant: datetime) -> ColumnElement[datetime]:
    """A time bound inside CASE, which does not inherit the column's type: without this the
    driver would write ISO text on SQLite, which the integer CHECK rejects."""
    return literal(instant, UtcDateTime())


def _guard(lease: Lease) -> ColumnElement[bool]:
    return and_(
        TASKS.c.id == lease.task_id,
        TASKS.c.status == LEASED,
        TASKS.c.locked_by == lease.worker_id,
        TASKS.c.lease_token == lease.lease_token,
    )


class LeaseRepository:
    def __init__(
        self, db: Database, clock: Clock = utcnow, rng: random.Random | None = None
    ) -> None:
        self.db = db
        self.clock = clock
        self.rng = rng or random.Random()
        self._claimers: dict[SchedulingStrategy, TaskClaimer] = {}
        sql = db.dialect.sql
        # claim and complete run on a DBAPI connection of their own (dialects/connections.py
        # says why).
        self._raw = db.raw
        self._complete_sql = sql.dbapi_sql(sql.COMPLETE_SQL)
        self._insert_log_sql = sql.dbapi_sql(sql.INSERT_LOG_SQL)
        now_param = bindparam("now", type_=UtcDateTime())
        self._expired = text(sql.EXPIRED_SELECT_SQL).bindparams(now_param)
        self._held_by = text(sql.HELD_BY_SELECT_SQL)
        self._renew_many = (
            update(TASKS)
            .where(
                TASKS.c.status == LEASED,
                TASKS.c.locked_by == bindparam("worker_id"),
                # The token too: a stale holder whose task was re-claimed by the same worker id
                # must not extend the new lease.
                tuple_(TASKS.c.id, TASKS.c.lease_token).in_(bindparam("leases", expanding=True)),
            )
            .values(lease_until_utc=bindparam("lease_until", type_=UtcDateTime()))
            .returning(TASKS.c.id, TASKS.c.lease_token, TASKS.c.cancel_requested)
        )

    def claimer(self, strategy: SchedulingStrategy | str) -> TaskClaimer:
        strategy = SchedulingStrategy(strategy)
        if strategy not in self._claimers:
            self._claimers[strategy] = self.db.dialect.claimer(strategy, self.rng)
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
        claimer = self.claimer(strategy)
        now = self.clock()
        with self._raw.transaction() as cursor:
            return self._claim_in(cursor, claimer, request, now)

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
        """``complete_many(outcomes)`` then ``claim(...)`` in one transaction: a busy worker
        commits once per round instead of twice. Returns (ids whose lease was lost, claimed).
        Each part is exactly what the separate calls do, guards and log rows included."""
        request = ClaimRequest(
            worker_id, list(types), dict(capabilities or {}), limit, lease_seconds
        )
        claimer = self.claimer(strategy)
        now = self.clock()
        with self._raw.transaction() as cursor:
            lost = self._complete_in(cursor, outcomes, now)
            return lost, self._claim_in(cursor, claimer, request, now)

    def _claim_in(
        self, cursor: Any, claimer: TaskClaimer, request: ClaimRequest, now: datetime
    ) -> list[ClaimedTask]:
        claimed = claimer.claim(cursor, request, now)
        self._write_logs_raw(
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
        """Extend the leases this worker still holds, in one statement; with ``heartbeat``,
        also record the worker's heartbeat in the same transaction. Leases missing from the
        result are lost."""
        now = self.clock()
        lease_until = now + timedelta(seconds=lease_seconds)
        tokens = {lease.task_id: lease.lease_token for lease in leases}
        to_log = set(log_task_ids)
        held: dict[int, RenewResult] = {}
        with self.db.write() as conn:
            if tokens:
                rows = conn.execute(
                    self._renew_many,
                    {
                        "worker_id": worker_id,
                        "leases": list(tokens.items()),
                        "lease_until": lease_until,
                    },
                ).all()
                held = {
                    row.id: RenewResult(lease_until, bool(row.cancel_requested)) for row in rows
                }
                write_logs(
                    conn,
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
                conn.execute(
                    update(WORKERS)
                    .where(WORKERS.c.worker_id == worker_id)
                    .values(heartbeat_utc=now, stopped_at_utc=None)
                )
        return held

    def is_cancel_requested(self, lease: Lease) -> bool:
        with self.db.read() as conn:
            value = conn.execute(
                TASKS.select().with_only_columns(TASKS.c.cancel_requested).where(_guard(lease))
            ).scalar()
        if value is None:
            raise LeaseLost(lease.task_id, lease.worker_id)
        return bool(value)

    # --- outcomes ---

    def complete(self, lease: Lease, result: Any = None) -> None:
        lost = self.complete_many([(lease, result)])
        if lost:
            raise LeaseLost(lease.task_id, lease.worker_id)

    def complete_many(self, outcomes: Sequence[tuple[Lease, Any]]) -> list[int]:
        """Complete several tasks in one transaction; returns the ids whose lease was lost."""
        now = self.clock()
        with self._raw.transaction() as cursor:
            return self._complete_in(cursor, outcomes, now)

    def _complete_in(
        self, cursor: Any, outcomes: Sequence[tuple[Lease, Any]], now: datetime
    ) -> list[int]:
        sql = self._raw.sql
        at = sql.bind_time(now)
        lost: list[int] = []
        logs = []
        for lease, result in outcomes:
            cursor.execute(
                self._complete_sql,
                {
                    "result": sql.bind_json(result),
                    "now": at,
                    "id": lease.task_id,
                    "worker_id": lease.worker_id,
                    "lease_token": lease.lease_token,
                },
            )
            if cursor.fetchone() is None:
                lost.append(lease.task_id)
                continue
            logs.append(
                log_entry(
                    lease.task_id,
                    "completed",
                    now,
                    event="completed",
                    worker_id=lease.worker_id,
                    attempt=lease.attempt,
                )
            )
        self._write_logs_raw(cursor, logs)
        return lost

    def _write_logs_raw(self, cursor: Any, entries: list[dict[str, Any]]) -> None:
        if not entries:
            return
        sql = self._raw.sql
        cursor.executemany(
            self._insert_log_sql,
            [
                {
                    **entry,
                    "at_utc": sql.bind_time(entry["at_utc"]),
                    "details": (
                        None if entry["details"] is None else sql.bind_json(entry["details"])
                    ),
                }
                for entry in entries
            ],
        )

    def fail(self, lease: Lease, error: str, *, permanent: bool = False) -> FailOutcome:
        """Retry with back-off while attempts remain; otherwise (or if ``permanent``) the task
        fails for good: the dead-letter state."""
        now = self.clock()
        settings = self.db.settings
        delay = jittered(
            retry_delay(lease.attempt, settings.retry_base_seconds, settings.retry_cap_seconds),
            RETRY_JITTER_FRACTION,
            self.rng,
        )
        retry_at = now + timedelta(seconds=delay)
        gives_up: ColumnElement[bool] = (
            true() if permanent else TASKS.c.attempts >= TASKS.c.max_attempts
        )
        with self.db.write() as conn:
            row = conn.execute(
                update(TASKS)
                .where(_guard(lease))
                .values(
                    status=case((gives_up, TaskStatus.FAILED.value), else_=TaskStatus.QUEUED.value),
                    run_after_utc=case((gives_up, TASKS.c.run_after_utc), else_=_at(retry_at)),
                    finished_at_utc=case((gives_up, _at(now)), else_=None),
                    locked_by=case((gives_up, TASKS.c.locked_by), else_=None),
                    lease_until_utc=None,
                    error_message=error,
                    wr_key=None,
                    updated_at_utc=now,
                )
                .returning(TASKS.c.status, TASKS.c.attempts, TASKS.c.max_attempts)
            ).first()
            if row is None:
                raise LeaseLost(lease.task_id, lease.worker_id)
            status = TaskStatus(row.status)
            if status is TaskStatus.QUEUED:
                entry = log_entry(
                    lease.task_id,
                    "retry scheduled",
                    now,
                    level="WARNING",
                    event="retried",
                    worker_id=lease.worker_id,
                    attempt=lease.attempt,
                    error=error,
                    delay_seconds=round(delay, 3),
                    run_after_utc=retry_at.isoformat(),
                )
            else:
                entry = log_entry(
                    lease.task_id,
                    "failed",
                    now,
                    level="ERROR",
                    event="failed",
                    worker_id=lease.worker_id,
                    attempt=lease.attempt,
                    error=error,
                    permanent=permanent or None,
                    attempts_exhausted=row.attempts >= row.max_attempts or None,
                )
            write_logs(conn, [entry])
        return FailOutcome(status, retry_at if status is TaskStatus.QUEUED else None)

    def release(self, lease: Lease, reason: str = "worker shutting down") -> None:
        """Give the task back without using up an attempt (graceful shutdown). A task whose
        cancellation was requested ends cancelled instead."""
        now = self.clock()
        cancel = TASKS.c.cancel_requested
        with self.db.write() as conn:
            row = conn.execute(
                update(TASKS)
                .where(_guard(lease))
                .values(
                    status=case(
                        (cancel, TaskStatus.CANCELLED.value), else_=TaskStatus.QUEUED.value
                    ),
                    attempts=TASKS.c.attempts - 1,
                    run_after_utc=case((cancel, TASKS.c.run_after_utc), else_=_at(now)),
                    finished_at_utc=case((cancel, _at(now)), else_=None),
                    locked_by=case((cancel, TASKS.c.locked_by), else_=None),
                    lease_until_utc=None,
                    wr_key=None,
                    updated_at_utc=now,
                )
                .returning(TASKS.c.status)
            ).first()
            if row is None:
                raise LeaseLost(lease.task_id, lease.worker_id)
            write_logs(
                conn,
                [
                    log_entry(
                        lease.task_id,
                        "released" if row.status == TaskStatus.QUEUED.value else "cancelled",
                        now,
                        event="released" if row.status == TaskStatus.QUEUED.value else "cancelled",
                        worker_id=lease.worker_id,
                        attempt=lease.attempt,
                        reason=reason,
                    )
                ],
            )
            if row.status == TaskStatus.QUEUED.value:
                self.db.dialect.notify_new_tasks(conn)

    def mark_cancelled(self, lease: Lease, reason: str = "cancelled by user") -> None:
        """End a running task whose cancellation was requested."""
        now = self.clock()
        with self.db.write() as conn:
            row = conn.execute(
                update(TASKS)
                .where(_guard(lease))
                .values(
                    status=TaskStatus.CANCELLED.value,
                    finished_at_utc=now,
                    lease_until_utc=None,
                    error_message=reason,
                    updated_at_utc=now,
                )
                .returning(TASKS.c.id)
            ).first()
            if row is None:
                raise LeaseLost(lease.task_id, lease.worker_id)
            write_logs(
                conn,
                [
                    log_entry(
                        lease.task_id,
                        "cancelled",
                        now,
                        event="cancelled",
                        worker_id=lease.worker_id,
                        attempt=lease.attempt,
                        reason=reason,
                    )
                ],
            )

    # --- recovery ---

    def recover_expired(self, limit: int = RECOVERY_BATCH) -> RecoveryReport:
        """Put tasks whose lease expired back to queued, or to failed when no attempts are
        left (cancelled when cancellation had been requested). Safe to run from many workers
        at once: each row is re-checked by token in the same transaction."""
        now = self.clock()
        with self.db.write() as conn:
            rows = conn.execute(self._expired, {"now": now, "limit": limit}).all()
            return self._recover(conn, rows, now, "lease expired", require_expired=True)

    def release_worker_tasks(self, worker_id: str, reason: str) -> RecoveryReport:
        """Recover every task a (stale) worker holds, whatever its lease says."""
        now = self.clock()
        with self.db.write() as conn:
            rows = conn.execute(
                self._held_by, {"worker_id": worker_id, "limit": RECOVERY_BATCH}
            ).all()
            return self._recover(conn, rows, now, reason, require_expired=False)

    def _recover(
        self,
        conn: Connection,
        rows: Sequence[Any],
        now: datetime,
        reason: str,
        *,
        require_expired: bool,
    ) -> RecoveryReport:
        report = RecoveryReport()
        logs = []
        for row in rows:
            if row.cancel_requested:
                status, bucket = TaskStatus.CANCELLED, report.cancelled
            elif row.attempts >= row.max_attempts:
                status, bucket = TaskStatus.FAILED, report.failed
            else:
                status, bucket = TaskStatus.QUEUED, report.requeued
            requeue = status is TaskStatus.QUEUED
            message = (
                f"{reason} (worker {row.locked_by}, attempt {row.attempts} of {row.max_attempts})"
            )
            guard = and_(
                TASKS.c.id == row.id,
                TASKS.c.status == LEASED,
                TASKS.c.lease_token == row.lease_token,
            )
            if require_expired:
                guard = and_(guard, TASKS.c.lease_until_utc < now)
            values: dict[str, Any] = {
                "status": status.value,
                "lease_until_utc": None,
                "wr_key": None,
                "updated_at_utc": now,
                "error_message": message,
            }
            if requeue:
                values.update(run_after_utc=now, locked_by=None)
            else:
                values.update(finished_at_utc=now)
            changed = conn.execute(update(TASKS).where(guard).values(**values)).rowcount
            if not changed:
                continue
            bucket.append(row.id)
            logs.append(
                log_entry(
                    row.id,
                    f"{reason}; {status.value}",
                    now,
                    level="WARNING",
                    event="lease_expired" if require_expired else "worker_lost",
                    worker_id=row.locked_by,
                    attempt=row.attempts,
                    outcome=status.value,
                )
            )
        write_logs(conn, logs)
        if report.requeued:
            self.db.dialect.notify_new_tasks(conn)
        return report
