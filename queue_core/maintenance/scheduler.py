"""Scheduled maintenance that workers run themselves: sweep, checkpoint, optimize, purge.

A worker builds one :class:`MaintenanceScheduler` and calls :meth:`~MaintenanceScheduler.run_due`
from its run loop. Each job has its own interval (``QueueSettings``; 0 switches a job off,
``maintenance_enabled=False`` all of them). However many workers call ``run_due``, each job
runs in one process per interval: the first to take the job's row in ``maintenance_leases``
runs it, and the row then says when the job is next due, so the others leave it alone.

``run_due`` costs nothing while no job is due: it keeps each job's next due time in memory,
and looks at the database (one short read, then one upsert only if the lease looks free) only
once that time has come. It never raises: a job that fails is logged and tried again at its
next interval, so maintenance can never take a worker down.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from queue_core.clock import Clock, utcnow
from queue_core.database import Database
from queue_core.dialects import JOB_CHECKPOINT, JOB_OPTIMIZE
from queue_core.maintenance.analyze import optimize
from queue_core.maintenance.checkpoint import CheckpointMode, checkpoint, wal_bytes
from queue_core.maintenance.leases import MaintenanceLeases, default_holder
from queue_core.maintenance.purge import purge
from queue_core.repositories import DashboardRepository, ScheduleRepository, sweep
from queue_core.settings import MAINTENANCE_SCHEDULES_RUN_LEASE_SECONDS, QueueSettings

log = logging.getLogger("prismq.queue.maintenance")

JOB_SWEEP = "sweep"
JOB_PURGE = "purge"
JOB_SAMPLE = "sample"
JOB_SCHEDULES = "schedules"

# A scheduled purge stops after this many batches and comes back soon after, so a large
# backlog never keeps the calling worker away from its tasks for long.
PURGE_BATCHES_PER_RUN = 20
BACKLOG_RETRY_SECONDS = 1.0
# After an error (database busy or down), try again after this long or the interval, if shorter.
ERROR_RETRY_SECONDS = 30.0


@dataclass(frozen=True)
class JobResult:
    summary: str
    backlog: bool = False
    """True when the job stopped with work left: it is due again in BACKLOG_RETRY_SECONDS."""
    routine: bool = False
    """True when nothing happened worth a person's attention: logged at DEBUG, not INFO."""


class JobContext:
    """What a running job gets: ``keep_alive()`` renews its lease during long work."""

    def __init__(self, renew: Callable[[], None]) -> None:
        self._renew = renew

    def keep_alive(self, _done: int = 0) -> None:
        self._renew()


@dataclass(frozen=True)
class MaintenanceJob:
    name: str
    interval_seconds: float
    run: Callable[[JobContext], JobResult]
    run_lease_seconds: float | None = None
    """How long a runner holds the job while it runs (default: the settings'); a runner that
    dies is replaced once this has passed."""


@dataclass(frozen=True)
class JobRun:
    """One job this scheduler ran (returned by run_due)."""

    name: str
    started_utc: datetime
    finished_utc: datetime
    summary: str
    error: str | None = None


class MaintenanceScheduler:
    """Runs the maintenance jobs that are due, electing one runner per job through the
    database. Thread-safe only in the sense that every instance is independent: give each
    thread or process its own."""

    def __init__(
        self,
        db: Database,
        *,
        settings: QueueSettings | None = None,
        holder: str | None = None,
        clock: Clock = utcnow,
        jobs: Sequence[MaintenanceJob] | None = None,
    ) -> None:
        self.db = db
        self.settings = settings or db.settings
        self.holder = holder or default_holder()
        self.clock = clock
        self.leases = MaintenanceLeases(db, clock)
        self.jobs: list[MaintenanceJob] = [
            job
            for job in (jobs if jobs is not None else default_jobs(db, self.settings, clock))
            if job.interval_seconds > 0
        ]
        self._next_check: dict[str, datetime] = {}
        self._held_until: dict[str, datetime] = {}

    @property
    def enabled(self) -> bool:
        return self.settings.maintenance_enabled and bool(self.jobs)

    def next_due(self) -> datetime | None:
        """The earliest time this scheduler will look at a job again (None when disabled)."""
        if not self.enabled:
            return None
        now = self.clock()
        return min(self._next_check.get(job.name, now) for job in self.jobs)

    def run_due(self) -> list[JobRun]:
        """Run every job that is due and that this process wins the lease for."""
        if not self.enabled:
            return []
        runs = []
        for job in self.jobs:
            next_check = self._next_check.get(job.name)
            if next_check is not None and self.clock() < next_check:
                continue
            run = self._run_if_elected(job)
            if run is not None:
                runs.append(run)
        return runs

    def _run_if_elected(self, job: MaintenanceJob) -> JobRun | None:
        now = self.clock()
        interval = timedelta(seconds=job.interval_seconds)
        try:
            current = self.leases.get(job.name)
            if current is not None and current.lease_until_utc > now:
                self._next_check[job.name] = current.lease_until_utc
                return None
            run_lease = timedelta(
                seconds=max(
                    job.interval_seconds,
                    job.run_lease_seconds or self.settings.maintenance_run_lease_seconds,
                )
            )
            if not self.leases.try_acquire(job.name, self.holder, now + run_lease):
                taken = self.leases.get(job.name)
                self._next_check[job.name] = taken.lease_until_utc if taken else now + interval
                return None
        except Exception as exc:  # noqa: BLE001 - busy, down, not migrated: not the worker's problem
            self._next_check[job.name] = now + min(interval, timedelta(seconds=ERROR_RETRY_SECONDS))
            log.warning("maintenance %s: cannot take its lease: %s", job.name, exc)
            return None
        self._held_until[job.name] = now + run_lease
        return self._run(job, now, interval, run_lease)

    def _run(
        self, job: MaintenanceJob, started: datetime, interval: timedelta, run_lease: timedelta
    ) -> JobRun:
        context = JobContext(lambda: self._renew(job.name, run_lease))
        error: str | None = None
        summary = ""
        next_in = interval
        try:
            result = job.run(context)
            summary = result.summary
            if result.backlog:
                next_in = min(interval, timedelta(seconds=BACKLOG_RETRY_SECONDS))
            level = logging.DEBUG if result.routine else logging.INFO
            log.log(level, "maintenance %s: %s", job.name, summary)
        except Exception as exc:  # a failing job must not take the worker down
            error = f"{type(exc).__name__}: {exc}"
            next_in = min(interval, timedelta(seconds=ERROR_RETRY_SECONDS))
            log.warning("maintenance %s failed: %s", job.name, error, exc_info=True)
        finished = self.clock()
        self._next_check[job.name] = finished + next_in
        try:
            self.leases.extend(job.name, self.holder, finished + next_in)
        except Exception as exc:  # noqa: BLE001 - as above
            # The lease then simply runs out at its run-length end; someone runs the job later.
            log.warning("maintenance %s: cannot record its next run: %s", job.name, exc)
        return JobRun(job.name, started, finished, summary, error)

    def _renew(self, name: str, run_lease: timedelta) -> None:
        # Renew once half the run lease is used up, not at every batch: one write, not many.
        now = self.clock()
        if now + run_lease / 2 < self._held_until.get(name, now):
            return
        if self.leases.extend(name, self.holder, now + run_lease):
            self._held_until[name] = now + run_lease


def default_jobs(
    db: Database, settings: QueueSettings, clock: Clock = utcnow
) -> list[MaintenanceJob]:
    """Sweep, the jobs the dialect needs (SQLite: checkpoint and optimize), purge, and the
    dashboard's depth sample, at the settings' intervals."""
    jobs = [
        MaintenanceJob(JOB_SWEEP, settings.maintenance_sweep_interval_seconds, _sweep(db, clock))
    ]
    needs = db.dialect.periodic_maintenance()
    if JOB_CHECKPOINT in needs:
        jobs.append(
            MaintenanceJob(
                JOB_CHECKPOINT,
                settings.maintenance_checkpoint_interval_seconds,
                _checkpoint(db, settings.maintenance_wal_truncate_bytes),
            )
        )
    if JOB_OPTIMIZE in needs:
        jobs.append(
            MaintenanceJob(
                JOB_OPTIMIZE,
                settings.maintenance_optimize_interval_seconds,
                lambda _ctx: JobResult(optimize(db), routine=True),
            )
        )
    jobs.append(
        MaintenanceJob(
            JOB_PURGE, settings.maintenance_purge_interval_seconds, _purge(db, settings, clock)
        )
    )
    jobs.append(
        MaintenanceJob(JOB_SAMPLE, settings.maintenance_sample_interval_seconds, _sample(db, clock))
    )
    jobs.append(
        MaintenanceJob(
            JOB_SCHEDULES,
            settings.maintenance_schedules_interval_seconds,
            _schedules(db, clock),
            run_lease_seconds=MAINTENANCE_SCHEDULES_RUN_LEASE_SECONDS,
        )
    )
    return jobs


def _sample(db: Database, clock: Clock) -> Callable[[JobContext], JobResult]:
    """The queue's depth once a minute, for the dashboard's depth chart."""
    samples = DashboardRepository(db, clock)

    def run(_context: JobContext) -> JobResult:
        sample = samples.record_sample()
        return JobResult(
            f"{sample.queued} queued ({sample.due} due), {sample.leased} leased", routine=True
        )

    return run


def _schedules(db: Database, clock: Clock) -> Callable[[JobContext], JobResult]:
    """Enqueue the due tasks of every schedule (CONTRACT §9). The election keeps the other
    workers idle; exactly-once per due time is guarded in the database itself (see
    queue_core/repositories/schedules.py), so a failover neither doubles nor skips one."""
    schedules = ScheduleRepository(db, clock)

    def run(_context: JobContext) -> JobResult:
        done = schedules.enqueue_due()
        created = sum(1 for item in done if item.created)
        return JobResult(f"enqueued {created} scheduled task(s)", routine=not created)

    return run


def _sweep(db: Database, clock: Clock) -> Callable[[JobContext], JobResult]:
    def run(_context: JobContext) -> JobResult:
        report = sweep(db, clock)
        return JobResult(
            f"recovered {report.total} task(s): {len(report.requeued)} requeued, "
            f"{len(report.failed)} failed, {len(report.cancelled)} cancelled",
            routine=report.total == 0,
        )

    return run


def _checkpoint(db: Database, truncate_above: int) -> Callable[[JobContext], JobResult]:
    def run(_context: JobContext) -> JobResult:
        size = wal_bytes(db)
        mode = CheckpointMode.TRUNCATE if size > truncate_above else CheckpointMode.PASSIVE
        report = checkpoint(db, mode)
        # The once-a-minute passive checkpoint is routine; a truncation or a busy one is not.
        routine = mode is CheckpointMode.PASSIVE and not report.busy
        return JobResult(report.summary(), routine=routine)

    return run


def _purge(
    db: Database, settings: QueueSettings, clock: Clock
) -> Callable[[JobContext], JobResult]:
    def run(context: JobContext) -> JobResult:
        report = purge(
            db,
            settings.retention_days,
            logs_older_than_days=settings.log_retention_days,
            include_failed=settings.purge_include_failed,
            batch_size=settings.purge_batch_size,
            max_batches=PURGE_BATCHES_PER_RUN,
            progress=context.keep_alive,
            clock=clock,
        )
        deleted = report.tasks_deleted + report.old_logs_deleted
        return JobResult(report.summary(), backlog=not report.finished, routine=deleted == 0)

    return run
