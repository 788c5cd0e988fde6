"""Outcomes as values, and the one path that applies them.

A worker (or recovery) describes what became of a leased task as a value: :class:`Completed`,
:class:`Retry` at a time, :class:`Failed` (dead letter), :class:`Released` (given back),
:class:`Cancelled`, or :class:`Recovered` (recovery only). :func:`apply_outcomes` applies a
batch of them in the caller's transaction with ONE guarded statement per outcome kind
(``Dialect.set_state_if_leased_many``) and ONE task_logs INSERT for all their log rows.

Every statement matches a row only while it is ``leased`` by the outcome's worker under its
lease token (the token is bumped at every claim and never reused): an outcome whose lease was
lost changes nothing and comes back in :attr:`Applied.lost`.

Cancellation (CONTRACT §4): once a cancellation was accepted for a leased task, whatever the
attempt ends with, the task ends ``cancelled`` (a returned value is kept); such ids come back
in :attr:`Applied.cancelled`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson

from queue_core import dependencies
from queue_core.audit import TaskLogWriter, log_entry
from queue_core.claims import ClaimedTask, Lease, wakes_sleepers
from queue_core.dialects import Dialect, GuardedResult, GuardedRow
from queue_core.settings import RETRY_JITTER_FRACTION, QueueSettings
from queue_core.states import TaskStatus


@dataclass(frozen=True)
class Completed:
    """The handler returned ``result`` (JSON)."""

    lease: Lease
    result: Any = None


@dataclass(frozen=True)
class Retry:
    """A retryable error: queued again at ``at`` (fails instead when no attempts are left)."""

    lease: Lease
    error: str
    at: datetime


@dataclass(frozen=True)
class Failed:
    """Failed for good: the dead-letter state."""

    lease: Lease
    error: str
    permanent: bool = True
    """True for a permanent error, False when the attempts ran out."""


@dataclass(frozen=True)
class Released:
    """Given back unfinished (graceful shutdown): queued at once, the attempt not counted."""

    lease: Lease
    reason: str = "worker shutting down"


@dataclass(frozen=True)
class Cancelled:
    """The worker stopped the handler because its cancellation was requested."""

    lease: Lease
    reason: str = "cancelled by user"
    result: Any = None


Outcome = Completed | Retry | Failed | Released | Cancelled


@dataclass(frozen=True)
class Recovered:
    """A lease whose holder is gone, as recovery read it: queued again while attempts remain,
    else failed (cancelled if that was asked). ``expired``: recovered because its lease ran
    out (re-checked in the statement); otherwise because its worker stopped."""

    task_id: int
    lease_token: int
    worker_id: str | None
    attempts: int
    max_attempts: int
    reason: str
    expired: bool


@dataclass
class Applied:
    done: list[int] = field(default_factory=list)
    """Task ids whose outcome went in as asked (a Retry without attempts left: failed)."""
    cancelled: list[int] = field(default_factory=list)
    """Ids that ended ``cancelled`` instead, because their cancellation was requested."""
    lost: list[int] = field(default_factory=list)
    """Ids whose lease was lost (status, holder or token no longer match): nothing changed."""
    status: dict[int, TaskStatus] = field(default_factory=dict)
    """The state each applied (not lost) task is in now."""

    def merge(self, other: Applied) -> Applied:
        self.done += other.done
        self.cancelled += other.cancelled
        self.lost += other.lost
        self.status.update(other.status)
        return self


def retry_delay(attempt: int, base: float, cap: float) -> float:
    """CONTRACT §4: min(base * 2^(attempt-1), cap), before jitter."""
    return float(min(base * 2 ** max(attempt - 1, 0), cap))


def jittered(delay: float, fraction: float, rng: random.Random) -> float:
    """``delay`` spread by up to ±fraction, so retries of many tasks do not arrive together.
    Never past ``delay * (1 + fraction)``: the cap holds up to the jitter."""
    return max(0.0, delay * (1 + rng.uniform(-fraction, fraction)))


def backoff_at(
    attempt: int, now: datetime, settings: QueueSettings, rng: random.Random
) -> datetime:
    """When a retry of attempt ``attempt`` is due."""
    delay = retry_delay(attempt, settings.retry_base_seconds, settings.retry_cap_seconds)
    return now + timedelta(seconds=jittered(delay, RETRY_JITTER_FRACTION, rng))


def after_failure(
    task: ClaimedTask,
    error: str,
    *,
    permanent: bool,
    now: datetime,
    settings: QueueSettings,
    rng: random.Random | None = None,
) -> Retry | Failed:
    """The outcome of a failed attempt. Attempts are counted at claim, so the claimed row's
    attempt and max_attempts decide: a retry with back-off while attempts remain."""
    if permanent or task.attempt >= task.max_attempts:
        return Failed(task.lease, error, permanent=permanent)
    return Retry(task.lease, error, backoff_at(task.attempt, now, settings, rng or random.Random()))


# --- applying a batch ---

_KIND: dict[type[Any], str] = {
    Completed: "complete",
    Retry: "retry",
    Failed: "fail",
    Released: "release",
    Cancelled: "cancel",
}


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _row(outcome: Outcome) -> GuardedRow:
    lease = outcome.lease
    if isinstance(outcome, Completed):
        return GuardedRow(
            lease.task_id, lease.worker_id, lease.lease_token, None, _json(outcome.result)
        )
    if isinstance(outcome, Retry):
        return GuardedRow(
            lease.task_id, lease.worker_id, lease.lease_token, outcome.error, None, outcome.at
        )
    if isinstance(outcome, Failed):
        return GuardedRow(lease.task_id, lease.worker_id, lease.lease_token, outcome.error)
    if isinstance(outcome, Released):
        return GuardedRow(lease.task_id, lease.worker_id, lease.lease_token)
    result = None if outcome.result is None else _json(outcome.result)
    return GuardedRow(lease.task_id, lease.worker_id, lease.lease_token, outcome.reason, result)


def _log(outcome: Outcome, row: GuardedResult, now: datetime) -> dict[str, Any]:
    """The task_logs row of an applied outcome, by the state the task ended in."""
    lease = outcome.lease
    status = TaskStatus(row.status)
    common: dict[str, Any] = {"worker_id": lease.worker_id, "attempt": lease.attempt}
    if status is TaskStatus.CANCELLED:
        reason = outcome.reason if isinstance(outcome, Released | Cancelled) else None
        error = outcome.error if isinstance(outcome, Retry | Failed) else None
        return log_entry(
            lease.task_id, "cancelled", now, event="cancelled", reason=reason, error=error, **common
        )
    if isinstance(outcome, Completed):
        return log_entry(lease.task_id, "completed", now, event="completed", **common)
    if isinstance(outcome, Released):
        return log_entry(
            lease.task_id, "released", now, event="released", reason=outcome.reason, **common
        )
    assert isinstance(outcome, Retry | Failed)
    if status is TaskStatus.QUEUED:
        assert isinstance(outcome, Retry)
        return log_entry(
            lease.task_id,
            "retry scheduled",
            now,
            level="WARNING",
            event="retried",
            error=outcome.error,
            delay_seconds=round(max(0.0, (outcome.at - now).total_seconds()), 3),
            run_after_utc=outcome.at.isoformat(),
            **common,
        )
    permanent = isinstance(outcome, Failed) and outcome.permanent
    return log_entry(
        lease.task_id,
        "failed",
        now,
        level="ERROR",
        event="failed",
        error=outcome.error,
        permanent=permanent or None,
        attempts_exhausted=row.attempts >= row.max_attempts or None,
        **common,
    )


# The ends that update a task's dependents.
_ENDED = (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED)


def apply_outcomes(
    dialect: Dialect,
    logs: TaskLogWriter,
    cursor: Any,
    outcomes: Sequence[Outcome],
    now: datetime,
) -> Applied:
    """Apply ``outcomes`` in the cursor's transaction: one guarded statement per kind, then
    one INSERT of their task_logs rows. A task appears at most once per batch."""
    applied = Applied()
    by_kind: dict[str, list[Outcome]] = {}
    for outcome in outcomes:
        by_kind.setdefault(_KIND[type(outcome)], []).append(outcome)
    entries: list[dict[str, Any]] = []
    requeued = False
    ended: dict[int, str] = {}
    for kind, batch in by_kind.items():
        matched = {
            row.task_id: row
            for row in dialect.set_state_if_leased_many(
                cursor, kind, [_row(outcome) for outcome in batch], now
            )
        }
        for outcome in batch:
            task_id = outcome.lease.task_id
            row = matched.get(task_id)
            if row is None:
                applied.lost.append(task_id)
                continue
            status = TaskStatus(row.status)
            applied.status[task_id] = status
            if status is TaskStatus.CANCELLED and not isinstance(outcome, Cancelled):
                applied.cancelled.append(task_id)
            else:
                applied.done.append(task_id)
            entries.append(_log(outcome, row, now))
            requeued |= status is TaskStatus.QUEUED and _wakes(outcome, now)
            if row.has_dependents and status in _ENDED:
                ended[task_id] = status.value
    logs.write(cursor, entries)
    # Tasks that depend on the ones that just ended: counted down or cancelled, in this same
    # transaction (queue_core/dependencies.py).
    cascade = _cascade(dialect, logs, cursor, ended, now)
    requeued |= bool(cascade.ready)
    dialect.notify_finished_raw(cursor, _finished(applied, cascade))
    if requeued:
        dialect.notify_new_tasks_raw(cursor)  # idle workers may sleep until then
    return applied


def _wakes(outcome: Outcome, now: datetime) -> bool:
    """A task queued again by ``outcome`` must wake idle workers: released ones are due at
    once, retries when their back-off ends (``claims.wakes_sleepers``)."""
    if isinstance(outcome, Released):
        return True
    return isinstance(outcome, Retry) and wakes_sleepers(outcome.at, now)


def apply_recovered(
    dialect: Dialect,
    logs: TaskLogWriter,
    cursor: Any,
    recovered: Sequence[Recovered],
    now: datetime,
) -> Applied:
    """Apply recoveries (same statement shape; ``expire`` re-checks the expiry)."""
    applied = Applied()
    entries: list[dict[str, Any]] = []
    ended: dict[int, str] = {}
    for expired in (True, False):
        batch = [r for r in recovered if r.expired is expired]
        if not batch:
            continue
        rows = [
            GuardedRow(
                r.task_id,
                r.worker_id,
                r.lease_token,
                f"{r.reason} (worker {r.worker_id}, attempt {r.attempts} of {r.max_attempts})",
            )
            for r in batch
        ]
        kind = "expire" if expired else "worker_lost"
        matched = {
            row.task_id: row for row in dialect.set_state_if_leased_many(cursor, kind, rows, now)
        }
        for r in batch:
            row = matched.get(r.task_id)
            if row is None:
                applied.lost.append(r.task_id)
                continue
            status = TaskStatus(row.status)
            applied.status[r.task_id] = status
            (applied.cancelled if status is TaskStatus.CANCELLED else applied.done).append(
                r.task_id
            )
            if row.has_dependents and status in _ENDED:
                ended[r.task_id] = status.value
            entries.append(
                log_entry(
                    r.task_id,
                    f"{r.reason}; {status.value}",
                    now,
                    level="WARNING",
                    event="lease_expired" if expired else "worker_lost",
                    worker_id=r.worker_id,
                    attempt=r.attempts,
                    outcome=status.value,
                )
            )
    logs.write(cursor, entries)
    cascade = _cascade(dialect, logs, cursor, ended, now)
    dialect.notify_finished_raw(cursor, _finished(applied, cascade))
    return applied


def _cascade(
    dialect: Dialect, logs: TaskLogWriter, cursor: Any, ended: dict[int, str], now: datetime
) -> dependencies.CascadeReport:
    if not ended:
        return dependencies.CascadeReport()
    return dependencies.after_transitions(cursor, dialect.sql, logs, ended, now)


def _finished(applied: Applied, cascade: dependencies.CascadeReport) -> list[int]:
    """Every task the transaction ended, for the waits on them (``notify_finished_raw``)."""
    ended = [task_id for task_id, status in applied.status.items() if status in _ENDED]
    return ended + list(cascade.cancelled)


__all__ = [
    "Applied",
    "Cancelled",
    "Completed",
    "Failed",
    "Outcome",
    "Recovered",
    "Released",
    "Retry",
    "after_failure",
    "apply_outcomes",
    "apply_recovered",
    "backoff_at",
    "jittered",
    "retry_delay",
]
