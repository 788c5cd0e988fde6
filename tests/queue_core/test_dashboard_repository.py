"""DashboardRepository (the /ui charts and running tasks) and DashboardSessionRepository."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import text

from queue_core.clock import ManualClock
from queue_core.database import Database
from queue_core.maintenance.scheduler import JOB_SAMPLE, MaintenanceScheduler, default_jobs
from queue_core.repositories import (
    DashboardRepository,
    DashboardSessionRepository,
    LeaseRepository,
    TaskRepository,
)


def test_throughput_counts_finished_tasks_per_minute(db: Database, clock: ManualClock) -> None:
    tasks = TaskRepository(db, clock)
    leases = LeaseRepository(db, clock)
    dashboard = DashboardRepository(db, clock)
    start = clock.now
    for _ in range(3):
        tasks.enqueue(type="t")
    done = leases.claim("w", ["t"], limit=3)
    leases.complete(done[0].lease, None)  # minute 0: one completed
    clock.advance(90)
    leases.fail(done[1].lease, "x", permanent=True)  # minute 1: one failed
    tasks.cancel(done[2].task_id)  # leased: only asks; not finished
    queued = tasks.enqueue(type="t").task.task_id
    tasks.cancel(queued)  # minute 1: one cancelled
    clock.advance(30)

    series = dashboard.throughput(minutes=5)
    assert len(series) == 5
    assert [m.count for m in series] == [0, 0, 0, 1, 2]
    assert series[-1].start_utc == clock.now - timedelta(minutes=1)
    assert series[0].start_utc == clock.now - timedelta(minutes=5)
    assert sum(m.count for m in dashboard.throughput(minutes=1)) == 2
    clock.now = start + timedelta(hours=2)
    assert sum(m.count for m in dashboard.throughput()) == 0


def test_samples_record_depth_once_a_minute_and_expire(db: Database, clock: ManualClock) -> None:
    tasks = TaskRepository(db, clock)
    dashboard = DashboardRepository(db, clock)
    tasks.enqueue(type="t")
    tasks.enqueue(type="t", run_after_utc=clock.now + timedelta(hours=1))
    LeaseRepository(db, clock).claim("w", ["t"])
    tasks.enqueue(type="t")
    first = dashboard.record_sample()
    assert (first.queued, first.due, first.leased) == (2, 1, 1)
    assert first.sampled_at_utc.second == 0
    again = dashboard.record_sample()  # same minute: kept once
    assert again.sampled_at_utc == first.sampled_at_utc
    assert len(dashboard.depth()) == 1
    clock.advance(60)
    dashboard.record_sample()
    assert [s.queued for s in dashboard.depth()] == [2, 2]
    clock.advance(2 * 86_400)
    dashboard.record_sample()  # and forgets samples past their retention
    with db.read() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM queue_samples")).scalar() == 1
    assert len(dashboard.depth()) == 1


def test_the_sample_job_runs_from_the_maintenance_scheduler(
    db: Database, clock: ManualClock
) -> None:
    jobs = [job for job in default_jobs(db, db.settings, clock) if job.name == JOB_SAMPLE]
    assert len(jobs) == 1
    runs = MaintenanceScheduler(db, clock=clock, jobs=jobs).run_due()
    assert [run.name for run in runs] == [JOB_SAMPLE]
    assert runs[0].error is None
    assert len(DashboardRepository(db, clock).depth()) == 1


def test_running_tasks_name_their_worker(db: Database, clock: ManualClock) -> None:
    tasks = TaskRepository(db, clock)
    tasks.enqueue(type="t")
    tasks.enqueue(type="t")
    claimed = LeaseRepository(db, clock).claim("w-7", ["t"])
    running = DashboardRepository(db, clock).running_tasks()
    assert [(r.task_id, r.worker_id, r.type) for r in running] == [(claimed[0].task_id, "w-7", "t")]


def test_sessions_end_on_logout_and_on_expiry(db: Database, clock: ManualClock) -> None:
    sessions = DashboardSessionRepository(db, clock)
    sessions.create("a" * 64, clock.now + timedelta(hours=1))
    sessions.create("b" * 64, clock.now + timedelta(hours=1))
    assert sessions.is_active("a" * 64)
    sessions.end("a" * 64)
    assert not sessions.is_active("a" * 64)
    assert sessions.is_active("b" * 64)
    clock.advance(3601)
    assert not sessions.is_active("b" * 64)
    sessions.create("c" * 64, clock.now + timedelta(hours=1))  # sweeps the expired rows
    with db.read() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM dashboard_sessions")).scalar() == 1


def test_the_chart_queries_use_indexes_on_sqlite(sqlite_url: str) -> None:
    """Throughput reads the finished-at index, never the table; samples use their key."""
    with Database(sqlite_url) as db:
        plans = {
            "throughput": (
                "SELECT COUNT(*) FROM task_queue WHERE finished_at_utc >= 1 AND finished_at_utc < 2"
            ),
            "depth": "SELECT * FROM queue_samples WHERE sampled_at_utc >= 1 "
            "ORDER BY sampled_at_utc",
            "running": "SELECT id FROM task_queue WHERE status = 'leased' "
            "ORDER BY lease_until_utc LIMIT 1000",
            "queued counts": "SELECT type, count(*) FROM task_queue WHERE status = 'queued' "
            "GROUP BY type",
            "oldest due": "SELECT MIN(run_after_utc) FROM task_queue WHERE status = 'queued' "
            "AND pending_deps = 0 AND run_after_utc <= 1",
        }
        # Walks of partial indexes that hold only the live rows of one state.
        partial_walks = {
            "running": "ix_task_queue_lease_until",
            "queued counts": "ix_task_queue_queued_type",
        }
        with db.read() as conn:
            for name, sql in plans.items():
                detail = " ".join(
                    row[-1] for row in conn.execute(text(f"EXPLAIN QUERY PLAN {sql}"))
                )
                assert "SEARCH" in detail or "USING" in detail, (name, detail)
                if name in partial_walks:
                    # Revision 0006 replaced the (status, type) index over the whole history.
                    assert f"USING INDEX {partial_walks[name]}" in detail, detail
                    assert "TEMP B-TREE" not in detail, detail
                    continue
                assert "SCAN task_queue" not in detail.replace("USING", "|"), (name, detail)
                if name == "throughput":
                    assert "COVERING INDEX" in detail, detail


def test_the_dead_letter_list_uses_its_partial_index(sqlite_url: str) -> None:
    """Rare failures in a long history must not make the dead-letter list walk all of it:
    once statistics exist (the hourly optimize job), the planner takes ix_task_queue_failed."""
    with Database(sqlite_url) as db:
        tasks = TaskRepository(db)
        leases = LeaseRepository(db)
        failed = []
        for _ in range(3):
            task_id = tasks.enqueue(type="t", max_attempts=1).task.task_id
            leases.fail(leases.claim("w", ["t"])[0].lease, "x", permanent=True)
            failed.append(task_id)
        with db.write() as conn:
            conn.execute(
                text(
                    "WITH RECURSIVE seq(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM seq "
                    "WHERE x < 2000) INSERT INTO task_queue (type, status) "
                    "SELECT 'done', 'completed' FROM seq"
                )
            )
            conn.execute(text("ANALYZE"))
        with db.read() as conn:
            detail = " ".join(
                row[-1]
                for row in conn.execute(
                    text(
                        "EXPLAIN QUERY PLAN SELECT * FROM task_queue WHERE status = 'failed' "
                        "ORDER BY id DESC LIMIT 50"
                    )
                )
            )
        assert "ix_task_queue_failed" in detail, detail
        listed = [t.task_id for t in tasks.list(status="failed", limit=2)]
        assert listed == sorted(failed, reverse=True)[:2]
