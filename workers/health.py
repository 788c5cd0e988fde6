"""DatabaseHealth: one back-off for every database call of a worker, and its throttled log.

The fetcher, the completer and the housekeeping share it (from different threads): while the
database is unavailable (busy beyond busy_timeout, restarting, unreachable, disk full) none of
them hammers it, and the log gets one WARNING at the first failure and one every
``DB_FAILURE_LOG_EVERY`` failures after it, never a traceback per retry.
"""

from __future__ import annotations

import logging
import threading

from queue_core.errors import DatabaseUnavailable
from workers.backoff import Backoff
from workers.defaults import DB_FAILURE_LOG_EVERY
from workers.metrics import WorkerMetrics


class DatabaseHealth:
    def __init__(
        self, metrics: WorkerMetrics, log: logging.LoggerAdapter[logging.Logger] | logging.Logger
    ) -> None:
        self._metrics = metrics
        self._log = log
        self._lock = threading.Lock()
        self._backoff = Backoff()

    def failed(self, operation: str, error: BaseException) -> float:
        """Record a failed call; returns the delay before the next try."""
        self._metrics.db_unavailable.labels(operation).inc()
        with self._lock:
            delay = self._backoff.failed()
            failures = self._backoff.failures
        if failures != 1 and failures % DB_FAILURE_LOG_EVERY != 0:
            return delay
        if isinstance(error, DatabaseUnavailable):
            self._log.warning(
                "database unavailable during %s (%s); retrying in %.2f s (failure %d)",
                operation,
                error,
                delay,
                failures,
            )
        else:
            self._log.error(
                "database error during %s; retrying in %.2f s (failure %d)",
                operation,
                delay,
                failures,
                exc_info=(type(error), error, error.__traceback__),
            )
        return delay

    def ok(self) -> None:
        with self._lock:
            if not self._backoff.failing:
                return
            outage = self._backoff.succeeded()
        self._log.warning("database available again after %.1f s", outage or 0.0)

    @property
    def failing(self) -> bool:
        return self._backoff.failing

    def ready(self) -> bool:
        return self._backoff.ready()

    def remaining(self) -> float:
        return self._backoff.remaining()
