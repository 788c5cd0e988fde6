"""Read "now" in the database's time, so hosts whose clocks disagree agree on lease expiry.

Worker hosts' clocks disagree, and a host whose clock runs ahead would recover the others'
live leases early (docs/scale-out.md#clock-skew). :class:`ClockSync` measures this host's
offset from the database at start and every ``CLOCK_SYNC_INTERVAL_SECONDS`` (on the lease
keeper's tick) and logs when it moves by a second or more. An injected clock (tests) is kept
as it is.
"""

from __future__ import annotations

import logging
import time

from queue_core.clock import Clock, DatabaseClock, utcnow
from queue_core.database import Database
from queue_core.settings import CLOCK_SYNC_INTERVAL_SECONDS


class ClockSync:
    def __init__(
        self, db: Database, clock: Clock, log: logging.LoggerAdapter[logging.Logger]
    ) -> None:
        self._db_clock = DatabaseClock(db.now) if clock is utcnow else None
        self.clock: Clock = self._db_clock if self._db_clock is not None else clock
        self._log = log
        self._synced_at = 0.0

    def sync(self) -> None:
        """Measure the offset now (raises when the database is unavailable)."""
        if self._db_clock is None:
            return
        before = self._db_clock.offset
        offset = self._db_clock.sync().total_seconds()
        self._synced_at = time.monotonic()
        if abs(offset - before.total_seconds()) >= 1.0:
            self._log.warning(
                "this host's clock is %+.3f s off the database's; using the database's time",
                -offset,
            )

    def sync_if_due(self) -> None:
        """The keeper's tick: measure again every CLOCK_SYNC_INTERVAL_SECONDS; never raises."""
        if time.monotonic() - self._synced_at < CLOCK_SYNC_INTERVAL_SECONDS:
            return
        try:
            self.sync()
        except Exception:  # noqa: BLE001 - the keeper's next renewal reports it
            self._synced_at = time.monotonic()
            self._log.debug("measuring the clock offset failed", exc_info=True)
