"""Exponential back-off for database calls that failed because the database was unavailable."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from workers.defaults import DB_RETRY_MAX_SECONDS, DB_RETRY_MIN_SECONDS


class Backoff:
    """``failed()`` doubles the delay (with jitter) up to a cap; ``succeeded()`` resets it."""

    def __init__(
        self,
        minimum: float = DB_RETRY_MIN_SECONDS,
        maximum: float = DB_RETRY_MAX_SECONDS,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.minimum = minimum
        self.maximum = maximum
        self._monotonic = monotonic
        self._rng = rng or random.Random()
        self._delay = 0.0
        self.failures = 0
        self.ready_at = 0.0
        self.down_since: float | None = None

    def failed(self) -> float:
        """Record a failure; returns the delay before the next try."""
        now = self._monotonic()
        if self.down_since is None:
            self.down_since = now
        self.failures += 1
        self._delay = min(self.maximum, max(self.minimum, self._delay * 2))
        delay = self._delay * self._rng.uniform(0.8, 1.0)
        self.ready_at = now + delay
        return delay

    def succeeded(self) -> float | None:
        """Reset; returns how long the database had been unavailable, if it had."""
        outage = None if self.down_since is None else self._monotonic() - self.down_since
        self._delay = 0.0
        self.failures = 0
        self.ready_at = 0.0
        self.down_since = None
        return outage

    @property
    def failing(self) -> bool:
        return self.down_since is not None

    def ready(self) -> bool:
        return self._monotonic() >= self.ready_at

    def remaining(self) -> float:
        return max(0.0, self.ready_at - self._monotonic())
