"""Time in one place: every "now" the queue uses comes from a Clock, so tests can move time."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone

Clock = Callable[[], datetime]

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


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


class ManualClock:
    """A clock that only moves when told to; for tests and simulations."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = ensure_utc(start) if start else utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now
