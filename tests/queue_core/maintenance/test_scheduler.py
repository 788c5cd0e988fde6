"""The maintenance lease elects one runner, and the scheduler runs each job once per interval."""

from __future__ import annotations

import multiprocessing
from collections import Counter
from datetime import timedelta

import pytest

from queue_core import migrate
from queue_core.clock import ManualClock, utcnow
from queue_core.database import Database
from queue_core.maintenance import (
    JobContext,
    JobResult,
    MaintenanceJob,
    MaintenanceLeases,
    MaintenanceScheduler,
)
from queue_core.repositories import LeaseRepository, TaskRepository
from queue_core.settings import QueueSettings
from tests.queue_core.maintenance._procs import contend

TIMEOUT = 60
PROCESSES = 2
THREADS = 3
ROUNDS = 8


@pytest.mark.slow
def test_lease_elects_exactly_one_runner_across_processes_and_threads(
    leases_db: Database, db_url: str
) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES * THREADS)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=contend, args=(db_url, p, ROUNDS, THREADS, barrier, results))
        for p in range(PROCESSES)
    ]
    for proc in procs:
        proc.start()
    won = [item for _ in procs for item in results.get(timeout=TIMEOUT)]
    for proc in procs:
        proc.join(timeout=TIMEOUT)
    assert all(proc.exitcode == 0 for proc in procs)
    per_round = Counter(round_no for round_no, _ in won)
    assert per_round == dict.fromkeys(range(ROUNDS), 1)
    leases = MaintenanceLeases(leases_db)
    for round_no, holder in won:
        lease = leases.get(f"job-{round_no}")
        assert lease is not None
        assert lease.holder == holder


def test_lease_is_taken_only_when_free_or_expired(leases_db: Database, clock: ManualClock) -> None:
    leases = MaintenanceLeases(leases_db, clock)
    assert leases.get("job") is None
    assert leases.try_acquire("job", "a", clock() + timedelta(seconds=10))
    assert not leases.try_acquire("job", "b", clock() + timedelta(seconds=10))
    assert not leases.try_acquire("job", "a", clock() + timedelta(seconds=10))
    assert leases.extend("job", "a", clock() + timedelta(seconds=20))
    assert not leases.extend("job", "b", clock() + timedelta(seconds=99))
    clock.advance(19)
    assert not leases.try_acquire("job", "b", clock() + timedelta(seconds=10))
    clock.advance(1)
    assert leases.try_acquire("job", "b", clock() + timedelta(seconds=10))
    lease = leases.get("job")
    assert lease is not None
    assert lease.holder == "b"
    assert not leases.extend("job", "a", clock() + timedelta(seconds=99))
    assert [item.name for item in leases.list()] == ["job"]


def _counting_job(name: str, interval: float, runs: list[str], **result: bool) -> MaintenanceJob:
    def run(_context: JobContext) -> JobResult:
        runs.append(name)
        return JobResult(f"{name} ran", **result)

    return MaintenanceJob(name, interval, run)


def test_each_job_runs_once_per_interval_among_schedulers(
    leases_db: Database, clock: ManualClock
) -> None:
    runs: list[str] = []
    jobs = [_counting_job("tick", 10, runs), _counting_job("tock", 25, runs)]
    schedulers = [
        MaintenanceScheduler(leases_db, holder=f"s{i}", clock=clock, jobs=jobs) for i in range(3)
    ]
    by_scheduler: Counter[str] = Counter()
    for _ in range(60):
        clock.advance(1)
        for scheduler in schedulers:
            for run in scheduler.run_due():
                by_scheduler[scheduler.holder] += 1
                assert run.error is None
    # tick at t=1, 11, 21, 31, 41, 51; tock at t=1, 26, 51.
    assert Counter(runs) == {"tick": 6, "tock": 3}
    assert sum(by_scheduler.values()) == 9


def test_disabled_scheduler_and_switched_off_jobs(leases_db: Database, clock: ManualClock) -> None:
    runs: list[str] = []
    off = QueueSettings(maintenance_enabled=False)
    jobs = [_counting_job("tick", 10, runs)]
    disabled = MaintenanceScheduler(leases_db, settings=off, clock=clock, jobs=jobs)
    assert disabled.run_due() == []
    assert disabled.next_due() is None
    zero = MaintenanceScheduler(leases_db, clock=clock, jobs=[_counting_job("never", 0, runs)])
    assert zero.run_due() == []
    assert runs == []
    everything_off = QueueSettings(
        maintenance_sweep_interval_seconds=0,
        maintenance_checkpoint_interval_seconds=0,
        maintenance_optimize_interval_seconds=0,
        maintenance_purge_interval_seconds=0,
        maintenance_sample_interval_seconds=0,
        maintenance_schedules_interval_seconds=0,
    )
    assert not MaintenanceScheduler(leases_db, settings=everything_off, clock=clock).enabled


def test_failing_job_is_reported_and_retried(leases_db: Database, clock: ManualClock) -> None:
    attempts: list[int] = []

    def flaky(_context: JobContext) -> JobResult:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("disk full")
        return JobResult("fine")

    scheduler = MaintenanceScheduler(
        leases_db, clock=clock, jobs=[MaintenanceJob("flaky", 3600, flaky)]
    )
    [run] = scheduler.run_due()
    assert run.error == "RuntimeError: disk full"
    assert scheduler.run_due() == []
    clock.advance(31)  # ERROR_RETRY_SECONDS, shorter than the interval
    [run] = scheduler.run_due()
    assert (run.error, run.summary) == (None, "fine")


def test_backlog_brings_a_job_back_soon(leases_db: Database, clock: ManualClock) -> None:
    runs: list[str] = []
    scheduler = MaintenanceScheduler(
        leases_db, clock=clock, jobs=[_counting_job("big", 3600, runs, backlog=True)]
    )
    scheduler.run_due()
    clock.advance(1.5)
    scheduler.run_due()
    assert runs == ["big", "big"]


def test_long_job_keeps_its_lease(leases_db: Database, clock: ManualClock) -> None:
    runs: list[str] = []
    settings = QueueSettings(maintenance_run_lease_seconds=60)

    def long_job(context: JobContext) -> JobResult:
        for _ in range(5):
            clock.advance(40)  # past the 60 s run lease, unless renewed
            context.keep_alive()
            assert rival.run_due() == []
        runs.append("long")
        return JobResult("done")

    jobs = [MaintenanceJob("long", 10, long_job)]
    rival = MaintenanceScheduler(
        leases_db, settings=settings, holder="rival", clock=clock, jobs=jobs
    )
    owner = MaintenanceScheduler(
        leases_db, settings=settings, holder="owner", clock=clock, jobs=jobs
    )
    assert [run.name for run in owner.run_due()] == ["long"]
    assert runs == ["long"]


def test_default_jobs_sweep_and_purge(leases_db: Database, backend: str) -> None:
    now = utcnow()
    old = ManualClock(now - timedelta(days=30))
    tasks = TaskRepository(leases_db, old)
    leases = LeaseRepository(leases_db, old)
    done = tasks.enqueue(type="done").task.task_id
    leases.complete(leases.claim("w", ["done"])[0].lease, None)
    stuck = tasks.enqueue(type="stuck").task.task_id
    leases.claim("w-dead", ["stuck"], lease_seconds=30)

    scheduler = MaintenanceScheduler(leases_db)
    names = [job.name for job in scheduler.jobs]
    expected = (
        ["sweep", "checkpoint", "optimize", "purge", "sample", "schedules"]
        if backend == "sqlite"
        else ["sweep", "purge", "sample", "schedules"]
    )
    assert names == expected
    runs = scheduler.run_due()
    assert [run.name for run in runs] == expected
    assert all(run.error is None for run in runs), runs
    current = TaskRepository(leases_db)
    assert current.get(stuck).status.value == "queued"
    with pytest.raises(Exception, match="not found"):
        current.get(done)
    assert scheduler.run_due() == []  # nothing is due again yet
    assert {lease.name for lease in MaintenanceLeases(leases_db).list()} == set(expected)


def test_run_due_never_raises_on_an_unmigrated_database(
    blank_db_url: str, clock: ManualClock
) -> None:
    db = Database(blank_db_url)
    try:
        migrate.upgrade(db, "0001")  # no maintenance_leases yet
        runs: list[str] = []
        scheduler = MaintenanceScheduler(db, clock=clock, jobs=[_counting_job("tick", 10, runs)])
        assert scheduler.run_due() == []
        assert runs == []
        next_due = scheduler.next_due()
        assert next_due is not None
        assert next_due > clock()
    finally:
        db.dispose()


def test_routine_runs_log_at_debug_and_real_work_at_info(
    leases_db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 12 item 18: the once-a-minute checkpoint (and any job that found nothing to do)
    does not fill a terminal at INFO; a job that recovered or deleted something does."""
    scheduler = MaintenanceScheduler(leases_db)
    with caplog.at_level("DEBUG", logger="prismq.queue.maintenance"):
        runs = scheduler.run_due()
    assert runs
    assert all(run.error is None for run in runs), runs
    by_level = {(r.levelname, r.getMessage().split(":")[0]) for r in caplog.records}
    assert not [r for r in caplog.records if r.levelno >= 20], by_level
    assert {message for _, message in by_level} >= {f"maintenance {run.name}" for run in runs}

    # A day later the jobs are due again, and the sweep has an expired lease to recover.

    caplog.clear()
    old = ManualClock(utcnow() - timedelta(days=30))
    leases = LeaseRepository(leases_db, old)
    TaskRepository(leases_db, old).enqueue(type="stuck")
    leases.claim("w-dead", ["stuck"], lease_seconds=30)
    with caplog.at_level("DEBUG", logger="prismq.queue.maintenance"):
        MaintenanceScheduler(leases_db, clock=ManualClock(utcnow() + timedelta(days=1))).run_due()
    info = [r.getMessage() for r in caplog.records if r.levelno == 20]
    assert any(m.startswith("maintenance sweep: recovered 1 task(s)") for m in info), info
