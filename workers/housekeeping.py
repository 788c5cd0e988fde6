"""Housekeeping on the runtime's thread: the recovery sweep and scheduled maintenance.

The sweep (recovery of expired leases and of stale workers' tasks) runs here and nowhere else
in a worker: every ``effective_sweep_interval`` (5 s, or the lease length when shorter), in
every worker, unelected, because recovery must not wait for one process and two sweeps at
once are harmless (each row is re-checked by lease token). The maintenance scheduler runs the
jobs that one worker at a time should run (checkpoint, optimize, purge), elected through the
database; it is built without its own sweep job, which exists for a scheduler run outside
workers.
"""

from __future__ import annotations

import logging
import time

from queue_core.clock import Clock
from queue_core.database import Database
from queue_core.maintenance.scheduler import JOB_SWEEP, MaintenanceScheduler, default_jobs
from queue_core.repositories import sweep
from workers.health import DatabaseHealth


class Housekeeping:
    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        worker_id: str,
        sweep_interval: float,
        maintenance: bool,
        health: DatabaseHealth,
        log: logging.LoggerAdapter[logging.Logger],
    ) -> None:
        self._db = db
        self._clock = clock
        self._sweep_interval = sweep_interval
        self._health = health
        self._log = log
        self._next_sweep = 0.0
        self.scheduler = self._build_scheduler(worker_id) if maintenance else None

    def _build_scheduler(self, worker_id: str) -> MaintenanceScheduler | None:
        jobs = [
            job
            for job in default_jobs(self._db, self._db.settings, self._clock)
            if job.name != JOB_SWEEP  # swept above, unelected
        ]
        scheduler = MaintenanceScheduler(self._db, holder=worker_id, clock=self._clock, jobs=jobs)
        return scheduler if scheduler.enabled else None

    def due_in(self, now: float) -> float:
        return max(0.0, self._next_sweep - now)

    def run_due(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if now < self._next_sweep or not self._health.ready():
            return
        self._next_sweep = now + self._sweep_interval
        self.sweep()
        if self.scheduler is not None:
            self.scheduler.run_due()  # never raises; cheap until a job is due

    def sweep(self) -> None:
        try:
            report = sweep(self._db, self._clock)
        except Exception as exc:  # noqa: BLE001
            self._health.failed("sweep", exc)
            return
        if report.total:
            self._log.info(
                "recovered %d task(s) from expired leases or stale workers: "
                "%d requeued, %d failed, %d cancelled",
                report.total,
                len(report.requeued),
                len(report.failed),
                len(report.cancelled),
            )
