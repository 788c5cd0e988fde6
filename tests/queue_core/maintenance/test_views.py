"""Migration 0002: the dashboard views agree with TaskRepository.stats() on both dialects."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from queue_core import migrate
from queue_core.clock import ManualClock, utcnow
from queue_core.database import Database
from queue_core.maintenance import read_snapshot
from queue_core.maintenance.views import VIEW_NAMES
from queue_core.models import Base
from queue_core.repositories import LeaseRepository, TaskRepository, WorkerRepository


def _finish(db: Database, at: datetime, task_type: str, outcome: str, count: int = 1) -> list[int]:
    """``count`` tasks of ``task_type`` that reached ``outcome`` at ``at``."""
    clock = ManualClock(at - timedelta(seconds=1))
    tasks = TaskRepository(db, clock)
    leases = LeaseRepository(db, clock)
    ids = [tasks.enqueue(type=task_type, max_attempts=3).task.task_id for _ in range(count)]
    if outcome == "cancelled":
        clock.advance(1)
        for task_id in ids:
            tasks.cancel(task_id)
        return ids
    claimed = leases.claim("w-history", [task_type], limit=count)
    assert sorted(c.task_id for c in claimed) == sorted(ids)
    clock.advance(1)
    for c in claimed:
        if outcome == "completed":
            leases.complete(c.lease, {"ok": True})
        elif outcome == "failed":
            leases.fail(c.lease, "boom", permanent=True)
        else:  # one failed attempt, retried later
            leases.fail(c.lease, "transient")
    return ids


def test_views_agree_with_stats(db: Database) -> None:
    now = utcnow()
    tasks = TaskRepository(db)
    for _ in range(5):
        tasks.enqueue(type="a")
    for _ in range(3):
        tasks.enqueue(type="b", run_after_utc=now + timedelta(hours=1))
    TaskRepository(db, ManualClock(now - timedelta(seconds=120))).enqueue(type="a")

    _finish(db, now - timedelta(minutes=2), "recent", "completed", 2)
    _finish(db, now - timedelta(minutes=30), "hour", "completed", 3)
    failed_hour = _finish(db, now - timedelta(minutes=30), "hour-failed", "failed")
    _finish(db, now - timedelta(minutes=30), "flaky", "retried")
    _finish(db, now - timedelta(minutes=10), "dropped", "cancelled")
    _finish(db, now - timedelta(hours=5), "day", "completed", 4)
    failed_day = _finish(db, now - timedelta(hours=3), "day-failed", "failed", 2)
    _finish(db, now - timedelta(days=3), "old", "completed", 2)
    _finish(db, now - timedelta(days=3), "old-failed", "failed")

    workers = WorkerRepository(db)
    workers.register("w-active")
    WorkerRepository(db, ManualClock(now - timedelta(seconds=120))).register("w-stale")
    workers.register("w-stopped")
    workers.stop("w-stopped")
    tasks.enqueue(type="run")
    tasks.enqueue(type="run")
    assert len(LeaseRepository(db).claim("w-active", ["run"], limit=2)) == 2

    stats = tasks.stats()
    snap = read_snapshot(db)

    by_type: dict[str, dict[str, int]] = {}
    for row in snap.depth:
        by_type.setdefault(row.type, {})[row.status] = row.task_count
    assert by_type == stats.by_type
    assert snap.count("queued") == stats.queued_tasks
    assert snap.count("leased") == stats.leased_tasks == 2
    assert snap.count("failed") == stats.failed_tasks == 4
    due_by_type = {(r.type, r.status): r.due_count for r in snap.depth}
    assert due_by_type[("a", "queued")] == 6
    assert due_by_type[("b", "queued")] == 0

    assert snap.oldest_due.delayed_tasks == 3
    assert snap.oldest_due.due_tasks == stats.queued_tasks - 3
    assert stats.oldest_queued_age_seconds is not None
    assert snap.oldest_due.oldest_due_age_seconds == pytest.approx(
        stats.oldest_queued_age_seconds, abs=5
    )

    rates = {r.window_name: r for r in snap.outcome_rates}
    assert [r.window_name for r in snap.outcome_rates] == ["5m", "1h", "24h"]
    assert (rates["5m"].completed, rates["5m"].failed, rates["5m"].cancelled) == (2, 0, 0)
    assert (rates["1h"].completed, rates["1h"].failed, rates["1h"].cancelled) == (5, 1, 1)
    assert (rates["24h"].completed, rates["24h"].failed, rates["24h"].cancelled) == (9, 3, 1)
    assert (rates["5m"].retried, rates["1h"].retried, rates["24h"].retried) == (0, 1, 1)
    assert rates["5m"].success_rate == 1.0
    assert rates["24h"].failure_rate == pytest.approx(3 / 12)
    assert rates["1h"].finished_per_minute == pytest.approx(7 / 60)

    activity = {w.worker_id: w for w in snap.workers}
    expected = {w.worker_id: w.status for w in workers.list()}
    assert {k: v.status for k, v in activity.items()} == expected
    assert expected == {"w-active": "active", "w-stale": "stale", "w-stopped": "stale"}
    assert snap.workers_active == stats.workers_active == 1
    assert activity["w-active"].leased_tasks == 2
    assert activity["w-stale"].leased_tasks == 0
    assert activity["w-stale"].heartbeat_age_seconds == pytest.approx(120, abs=10)

    assert {f.task_id for f in snap.recent_failures} == set(failed_hour + failed_day)
    assert all(f.error_message for f in snap.recent_failures)


def test_sqlite_views_show_iso_times(sqlite_url: str) -> None:
    db = Database(sqlite_url)
    try:
        worker = WorkerRepository(db).register("w1")
        with db.read() as conn:
            shown = conn.execute(
                text("SELECT last_heartbeat_utc FROM v_worker_activity WHERE worker_id = 'w1'")
            ).scalar_one()
        assert isinstance(shown, str)
        assert shown.endswith("+00:00")
        parsed = datetime.fromisoformat(shown)
        assert abs((parsed - worker.heartbeat_utc).total_seconds()) < 0.002
    finally:
        db.dispose()


def test_migration_0002_up_and_down(blank_db_url: str) -> None:
    db = Database(blank_db_url)
    try:
        migrate.upgrade(db)
        names = inspect(db.engine)
        assert "maintenance_leases" in names.get_table_names()
        assert set(VIEW_NAMES) <= set(inspect(db.engine).get_view_names())
        with db.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert [d for d in diff if "maintenance_leases" in repr(d)] == []

        migrate.downgrade(db, "0001")
        after = inspect(db.engine)
        assert "maintenance_leases" not in after.get_table_names()
        assert not set(VIEW_NAMES) & set(after.get_view_names())
        assert "task_queue" in after.get_table_names()

        migrate.upgrade(db)
        assert migrate.current_revision(db) == migrate.head_revision()
        assert read_snapshot(db).oldest_due.due_tasks == 0
    finally:
        db.dispose()
