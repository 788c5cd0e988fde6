"""Retention: purge deletes old finished tasks in batches and never a live one."""

from __future__ import annotations

import multiprocessing
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from queue_core.cli import main
from queue_core.clock import ManualClock, utcnow
from queue_core.database import Database
from queue_core.maintenance import count_purgeable, purge
from queue_core.repositories import LeaseRepository, TaskRepository
from queue_core.repositories._common import LOGS, TASKS
from queue_core.schemas import TaskCreate
from tests.queue_core.maintenance._procs import churn

TIMEOUT = 60


def _statuses(db: Database) -> dict[int, str]:
    with db.read() as conn:
        return {row.id: row.status for row in conn.execute(select(TASKS.c.id, TASKS.c.status))}


def _log_task_ids(db: Database) -> set[int]:
    with db.read() as conn:
        return set(conn.execute(select(LOGS.c.task_id).distinct()).scalars())


def _old_history(db: Database, clock: ManualClock) -> dict[str, list[int]]:
    """Tasks of every state, all created and finished 30 days before ``clock``'s start."""
    tasks = TaskRepository(db, clock)
    leases = LeaseRepository(db, clock)
    made: dict[str, list[int]] = {}
    for label in ("completed", "failed", "cancelled", "queued", "leased"):
        made[label] = [tasks.enqueue(type=label).task.task_id for _ in range(3)]
    for claimed in leases.claim("w-old", ["completed"], limit=3):
        leases.complete(claimed.lease, None)
    for claimed in leases.claim("w-old", ["failed"], limit=3):
        leases.fail(claimed.lease, "boom", permanent=True)
    for task_id in made["cancelled"]:
        tasks.cancel(task_id)
    leases.claim("w-old", ["leased"], limit=3, lease_seconds=100 * 86_400)
    return made


def test_purge_keeps_live_and_failed_tasks(db: Database) -> None:
    now = utcnow()
    old = _old_history(db, ManualClock(now - timedelta(days=30)))
    recent = _old_history(db, ManualClock(now - timedelta(hours=1)))

    counts = count_purgeable(db, 7)
    assert (counts.tasks, counts.old_logs) == (6, 0)
    report = purge(db, 7, batch_size=4)
    assert report.tasks_deleted == 6
    assert report.batches == 2
    assert report.finished
    # completed: enqueued, leased, completed; cancelled: enqueued, cancelled.
    assert report.task_logs_deleted == 3 * 3 + 3 * 2
    statuses = _statuses(db)
    for task_id in old["completed"] + old["cancelled"]:
        assert task_id not in statuses
    for label in ("failed", "queued", "leased"):
        assert all(statuses[t] == label for t in old[label])
    assert all(t in statuses for ids in recent.values() for t in ids)
    assert not (set(old["completed"] + old["cancelled"]) & _log_task_ids(db))

    assert purge(db, 7).tasks_deleted == 0  # idempotent
    report = purge(db, 7, include_failed=True)
    assert report.tasks_deleted == 3
    assert not set(old["failed"]) & set(_statuses(db))


def test_purge_old_logs_and_batch_limit(db: Database) -> None:
    now = utcnow()
    old = _old_history(db, ManualClock(now - timedelta(days=30)))
    counts = count_purgeable(db, 60, logs_older_than_days=7)
    assert counts.tasks == 0
    with db.read() as conn:
        all_logs = conn.execute(select(func.count()).select_from(LOGS)).scalar_one()
    assert counts.old_logs == all_logs

    report = purge(db, 60, logs_older_than_days=7, batch_size=5, max_batches=2)
    assert (report.old_logs_deleted, report.batches, report.finished) == (10, 2, False)
    report = purge(db, 60, logs_older_than_days=7, batch_size=5)
    assert report.old_logs_deleted == all_logs - 10
    assert report.finished
    # Old logs go; the tasks they described stay.
    assert _log_task_ids(db) == set()
    assert len(_statuses(db)) == sum(len(ids) for ids in old.values())

    with pytest.raises(ValueError, match="negative"):
        purge(db, -1)


def test_purge_cli(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    db = Database(db_url)
    try:
        _old_history(db, ManualClock(utcnow() - timedelta(days=30)))
    finally:
        db.dispose()
    # Without --older-than nothing is deleted: the age is required (issue 12 item 19).
    for bare in (["maintenance", "purge"], ["maintenance", "purge", "--include-failed"]):
        assert main([*bare, "--database-url", db_url]) == 2
        assert capsys.readouterr().err.strip().splitlines() == [
            "error: --older-than DAYS is required: purge deletes the completed and cancelled "
            "tasks finished more than DAYS ago (add --dry-run to count them first)"
        ]
    args = ["maintenance", "purge", "--older-than", "7", "--database-url", db_url]
    assert main([*args, "--dry-run"]) == 0
    assert "would delete 6 task(s)" in capsys.readouterr().out  # the bare runs deleted none
    assert main([*args, "--batch-size", "2", "--include-failed"]) == 0
    assert "9 task(s)" in capsys.readouterr().out
    assert main(["maintenance", "purge", "--older-than", "-1", "--database-url", db_url]) == 2


@pytest.mark.slow
def test_purge_under_concurrent_load_loses_no_live_task(db_url: str) -> None:
    db = Database(db_url)
    now = utcnow()
    past = ManualClock(now - timedelta(days=30))
    tasks = TaskRepository(db, past)
    leases = LeaseRepository(db, past)
    doomed: list[int] = []
    for _ in range(3):
        batch = tasks.enqueue_many([TaskCreate(type="done") for _ in range(500)])
        doomed += [t.task_id for t in batch]
    while claimed := leases.claim("w-old", ["done"], limit=500):
        leases.complete_many([(c.lease, None) for c in claimed])
    cancelled = [t.task_id for t in tasks.enqueue_many([TaskCreate(type="x") for _ in range(100)])]
    for task_id in cancelled:
        tasks.cancel(task_id)
    doomed += cancelled
    failed = [t.task_id for t in tasks.enqueue_many([TaskCreate(type="dead") for _ in range(20)])]
    for c in leases.claim("w-old", ["dead"], limit=20):
        leases.fail(c.lease, "boom", permanent=True)
    # Old queued tasks that the churn processes will claim and complete during the purge.
    live = [t.task_id for t in tasks.enqueue_many([TaskCreate(type="live") for _ in range(600)])]
    # Old tasks held by a slow worker throughout.
    held_ids = [t.task_id for t in tasks.enqueue_many([TaskCreate(type="slow") for _ in range(30)])]
    LeaseRepository(db).claim("w-slow", ["slow"], limit=30, lease_seconds=3600)

    ctx = multiprocessing.get_context("spawn")
    stop, ready, results = ctx.Event(), ctx.Queue(), ctx.Queue()
    procs = [ctx.Process(target=churn, args=(db_url, i, stop, ready, results)) for i in range(2)]
    for proc in procs:
        proc.start()
    purged = 0
    rounds = 0
    try:
        for _ in procs:
            ready.get(timeout=TIMEOUT)
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            report = purge(db, 7, batch_size=50, max_batches=4)
            purged += report.tasks_deleted
            rounds += 1
            live_left = TaskRepository(db).stats().by_type.get("live", {}).get("queued", 0)
            if report.finished and live_left == 0 and rounds >= 3:
                break
    finally:
        stop.set()
        outcomes = [results.get(timeout=TIMEOUT) for _ in procs]
        for proc in procs:
            proc.join(timeout=TIMEOUT)
    assert all(proc.exitcode == 0 for proc in procs)

    statuses = _statuses(db)
    assert purged == len(doomed)
    assert not set(doomed) & set(statuses)
    assert all(statuses[t] == "failed" for t in failed)
    assert all(statuses[t] == "leased" for t in held_ids)
    completed_by_churn: set[int] = set()
    for _, enqueued, completed, lost in outcomes:
        assert lost == []
        assert all(t in statuses for t in enqueued)
        completed_by_churn.update(completed)
    assert all(statuses[t] == "completed" for t in completed_by_churn)
    assert all(t in statuses for t in live)
    assert set(live) <= completed_by_churn, "the churn processes completed every old live task"
    db.dispose()
