"""Cron arithmetic for periodic tasks (CONTRACT §9): which due times a schedule has, in its
time zone, and which of them a catch-up policy enqueues.

Cron expressions are parsed and walked by ``cronsim`` (docs/scheduling.md says why that
library): five fields, evaluated in the schedule's IANA time zone, with DST handled as
Debian's cron does. A time that a spring-forward transition skips runs right after the jump;
in the repeated hour of a fall-back transition a job at a fixed hour runs once, while a job
whose hour field is a wildcard runs in both passes.

Everything here is pure: times in and out are aware UTC datetimes, so tests move a
:class:`~queue_core.clock.ManualClock` over both DST transitions without a database.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from queue_core.clock import ensure_utc
from queue_core.errors import InvalidSchedule
from queue_core.settings import SCHEDULE_CATCH_UP_ALL_MAX, SCHEDULE_MISSED_AFTER_SECONDS


class CatchUp(str, enum.Enum):
    """What a schedule does with due times missed while no worker ran."""

    LATEST = "latest"  # enqueue the most recent missed time once (default)
    NONE = "none"  # skip them
    ALL = "all"  # enqueue each, at most SCHEDULE_CATCH_UP_ALL_MAX

    def __str__(self) -> str:
        return self.value


def time_zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``; InvalidSchedule when there is none of that name."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise InvalidSchedule(f"unknown time zone {name!r}: use an IANA name") from exc


def check_cron(expression: str) -> str:
    """The expression, if it is a valid five-field cron expression."""
    if not isinstance(expression, str) or len(expression.split()) != 5:
        raise InvalidSchedule(
            f"invalid cron expression {expression!r}: five fields "
            "(minute hour day-of-month month day-of-week)"
        )
    try:
        CronSim(expression, datetime(2000, 1, 1, tzinfo=timezone.utc))
    except CronSimError as exc:
        raise InvalidSchedule(f"invalid cron expression {expression!r}: {exc}") from exc
    return expression


@dataclass(frozen=True)
class Cron:
    """A cron expression in a time zone."""

    expression: str
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        check_cron(self.expression)
        time_zone(self.timezone)

    def times_after(self, after: datetime) -> Iterator[datetime]:
        """Due times strictly after ``after``, in order, as UTC instants."""
        zone = time_zone(self.timezone)
        for local in CronSim(self.expression, ensure_utc(after).astimezone(zone)):
            yield local.astimezone(timezone.utc)

    def next_after(self, after: datetime) -> datetime:
        return next(self.times_after(after))

    def times_up_to(self, until: datetime) -> Iterator[datetime]:
        """Due times at or before ``until``, newest first, as UTC instants."""
        zone = time_zone(self.timezone)
        # cronsim walks whole minutes and yields times strictly before its start: starting a
        # microsecond later includes ``until`` itself when it is a due time.
        start = (ensure_utc(until) + timedelta(microseconds=1)).astimezone(zone)
        for local in CronSim(self.expression, start, reverse=True):
            yield local.astimezone(timezone.utc)


@dataclass(frozen=True)
class DuePlan:
    """What one scheduler round does for one schedule."""

    enqueue: list[datetime]
    """The due times to enqueue now, oldest first."""
    next_due: datetime
    """The first due time after ``now``: where the schedule stands once this round is done."""
    skipped: int
    """Missed due times seen and left out by the policy (a lower bound)."""


def plan_due(
    cron: Cron,
    next_due: datetime,
    now: datetime,
    catch_up: CatchUp | str,
    *,
    missed_after: float = SCHEDULE_MISSED_AFTER_SECONDS,
    all_max: int = SCHEDULE_CATCH_UP_ALL_MAX,
) -> DuePlan:
    """The due times from ``next_due`` up to ``now`` and which of them to enqueue.

    A due time at most ``missed_after`` seconds old is on time (the scheduler looks every
    second; a failover takes a few): it is always enqueued. Older ones were missed while no
    worker ran, and the policy decides: ``latest`` enqueues the most recent due time once,
    ``none`` only the on-time ones, ``all`` each of them (the most recent ``all_max``).

    The walk goes backwards from ``now`` and stops as soon as the policy has what it needs, so
    a minutely schedule left alone for a year costs a handful of steps, not half a million.
    """
    catch_up = CatchUp(catch_up)
    if next_due > now:
        return DuePlan([], next_due, 0)
    on_time_from = now - timedelta(seconds=missed_after)
    newest_first: list[datetime] = []
    seen_missed = 0
    for due in cron.times_up_to(now):
        if due < next_due:
            break
        if due >= on_time_from:
            newest_first.append(due)
            continue
        seen_missed += 1
        if catch_up is CatchUp.ALL:
            if len(newest_first) >= all_max:
                break
            newest_first.append(due)
        elif catch_up is CatchUp.LATEST:
            if not newest_first:
                newest_first.append(due)
            break
        else:
            break
    chosen = sorted(newest_first)
    if catch_up is CatchUp.ALL:
        chosen = chosen[-all_max:] if all_max > 0 else []
    skipped = max(0, seen_missed - sum(1 for t in chosen if t < on_time_from))
    return DuePlan(chosen, cron.next_after(now), skipped)


def due_key(name: str, due: datetime) -> str:
    """The idempotency key of a schedule's task for one due time: the database refuses a
    second task for it, whoever tries."""
    return f"schedule:{name}:{ensure_utc(due).isoformat()}"


__all__ = [
    "CatchUp",
    "Cron",
    "DuePlan",
    "InvalidSchedule",
    "check_cron",
    "due_key",
    "plan_due",
    "time_zone",
]
