"""The lease keeper: a background thread that renews this worker's leases and heartbeats.

Every tick (``RENEW_FRACTION`` of the lease, at most ``HEARTBEAT_SECONDS_DEFAULT``) it renews
every lease the worker holds and records the heartbeat in one transaction
(``renew_many(..., heartbeat=True)``), so a handler that runs longer than the lease keeps its
task and the worker shows as active. The answer also says which leases are gone (lost) and
which tasks a user asked to cancel; the runtime acts on both. Handler log records waiting in
the task-log buffer are written on the same tick.

A renewal that fails because the database is unavailable is retried with back-off; the
leases stay valid meanwhile unless the outage outlasts them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from queue_core.claims import Lease
from queue_core.errors import DatabaseUnavailable
from queue_core.repositories import LeaseRepository, RenewResult
from queue_core.settings import HEARTBEAT_SECONDS_DEFAULT, RENEW_FRACTION, RENEW_LOG_EVERY
from workers.backoff import Backoff
from workers.defaults import DB_FAILURE_LOG_EVERY, WORKER_LOGGER

log = logging.getLogger(WORKER_LOGGER)


def renew_interval(lease_seconds: float) -> float:
    return min(lease_seconds * RENEW_FRACTION, HEARTBEAT_SECONDS_DEFAULT)


class LeaseKeeper:
    def __init__(
        self,
        *,
        leases: LeaseRepository,
        worker_id: str,
        lease_seconds: float,
        held: Callable[[], Sequence[Lease]],
        on_renewed: Callable[[Sequence[Lease], dict[int, RenewResult]], None],
        after_tick: Callable[[], None],
        on_unavailable: Callable[[str, Exception, float], None],
        logger: logging.LoggerAdapter[logging.Logger] | logging.Logger = log,
    ) -> None:
        self._leases = leases
        self._worker_id = worker_id
        self._lease_seconds = lease_seconds
        self._held = held
        self._on_renewed = on_renewed
        self._after_tick = after_tick
        self._on_unavailable = on_unavailable
        self._log = logger
        self.interval = renew_interval(lease_seconds)
        self._backoff = Backoff(maximum=self.interval)
        self._stopped = threading.Event()
        self._ticks = 0
        self._logged: set[Lease] = set()  # leases whose renewal task_logs has seen
        self._thread = threading.Thread(target=self._run, name="prismq-lease-keeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        delay = self.interval
        while not self._stopped.wait(delay):
            delay = self.tick()

    def _should_log(self) -> bool:
        failures = self._backoff.failures
        return failures == 1 or failures % DB_FAILURE_LOG_EVERY == 0

    def tick(self) -> float:
        """Renew and heartbeat once; returns the delay until the next tick."""
        leases = list(self._held())
        self._ticks += 1
        # The first renewal of each lease, then one tick in RENEW_LOG_EVERY for all.
        every = self._ticks % RENEW_LOG_EVERY == 1
        log_ids = [lease.task_id for lease in leases if every or lease not in self._logged]
        try:
            renewed = self._leases.renew_many(
                self._worker_id,
                leases,
                self._lease_seconds,
                log_task_ids=log_ids,
                heartbeat=True,
            )
        except DatabaseUnavailable as exc:
            delay = self._backoff.failed()
            self._on_unavailable("renew leases", exc, delay)
            if self._should_log():
                self._log.warning(
                    "database unavailable during renew leases (%s); retrying in %.2f s "
                    "(failure %d)",
                    exc,
                    delay,
                    self._backoff.failures,
                )
            return delay
        except Exception as exc:  # noqa: BLE001 - the keeper must outlive any one failure
            delay = self._backoff.failed()
            self._on_unavailable("renew leases", exc, delay)
            if self._should_log():
                self._log.error(
                    "renewing leases failed; retrying in %.2f s",
                    delay,
                    exc_info=(type(exc), exc, exc.__traceback__),
                )
            return delay
        outage = self._backoff.succeeded()
        if outage is not None:
            self._log.info("lease renewal works again after %.1f s", outage)
        self._logged = {lease for lease in leases if lease.task_id in renewed}
        self._on_renewed(leases, renewed)
        self._after_tick()
        return self.interval
