"""Time in one place: every "now" the queue uses comes from a Clock, so tests can move time."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from queue_core.settings import CLOCK_OFFSET_IGNORED_SECONDS

Clock = Callable[[], datetime]

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


CLOCK_OFFSET_ENV = "PRISMQ_QUEUE_TEST_CLOCK_OFFSET_SECONDS"
"""Test hook: seconds added to every "now" of this process (a host whose clock is off).

The scale-out test bed (benchmarks/scaleout.py) sets it on one host's workers to measure
clock skew between worker hosts. Not for production; it is read once, at import."""


def _offset_from_environment() -> timedelta:
    raw = os.environ.get(CLOCK_OFFSET_ENV, "").strip()
    if not raw:
        return timedelta(0)
    try:
        return timedelta(seconds=float(raw))
    except ValueError as exc:
        raise ValueError(f"{CLOCK_OFFSET_ENV} must be a number of seconds, not {raw!r}") from exc


_OFFSET = _offset_from_environment()

if _OFFSET:

    def utcnow() -> datetime:
        return datetime.now(timezone.utc) + _OFFSET

else:

    def utcnow() -> datetime:
        return datetime.now(timezone.utc)


class TimeOutOfRange(ValueError):
    """A time that has no UTC equivalent between years 1 and 9999, the range both databases
    store. A ValueError, so a pydantic validator turns it into a validation error (422)."""

    def __init__(self, value: datetime) -> None:
        super().__init__(
            f"{value.isoformat()} is outside the supported range "
            f"{datetime.min.isoformat()}Z to {datetime.max.isoformat()}Z (UTC)"
        )


def ensure_utc(value: datetime) -> datetime:
    """Naive datetimes are taken to be UTC already; aware ones are converted.

    Raises :class:`TimeOutOfRange` when the UTC time falls outside years 1 to 9999
    (``0001-01-01T00:00:00+14:00`` is still year 0 in UTC).
    """
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    try:
        return value.astimezone(timezone.utc)
    except OverflowError as exc:
        raise TimeOutOfRange(value) from exc


def to_micros(value: datetime) -> int:
    delta = ensure_utc(value) - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(value: int) -> datetime:
    return EPOCH + timedelta(microseconds=value)


class DatabaseClock:
    """Now in the database's time: this host's clock plus its measured offset to the database.

    Worker hosts' clocks disagree. Every lease time is written and compared by whichever
    process does it, so a host whose clock is ahead sees the others' leases expire early and
    recovers them while their workers still run them (measured in docs/scale-out.md: a host
    2 s fast against 2 s leases re-ran a third of the tasks). Reading every "now" in the
    database's time removes that: :meth:`sync` measures the offset with one round trip
    (the server's time against the midpoint of the request, so the error is at most half the
    round trip), and the worker calls it again at every heartbeat to follow clock jumps.
    """

    def __init__(
        self, read_database_now: Callable[[], datetime], base: Clock | None = None
    ) -> None:
        self._read = read_database_now
        self._base = base or utcnow
        self.offset = timedelta(0)

    def sync(self) -> timedelta:
        """Measure the offset again; one below ``CLOCK_OFFSET_IGNORED_SECONDS`` counts as 0."""
        before = self._base()
        server = ensure_utc(self._read())
        after = self._base()
        measured = server - (before + (after - before) / 2)
        # Synchronised hosts (and SQLite, on this very host) differ by milliseconds: noise
        # against leases of seconds, and not worth a clock that moves by the round trip.
        ignored = abs(measured.total_seconds()) < CLOCK_OFFSET_IGNORED_SECONDS
        self.offset = timedelta(0) if ignored else measured
        return self.offset

    def __call__(self) -> datetime:
        return self._base() + self.offset


class ManualClock:
    """A clock that only moves when told to; for tests and simulations."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = ensure_utc(start) if start else utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now
