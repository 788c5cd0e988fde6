"""Workers run scheduled maintenance themselves: here, purging under the retention policy."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from sqlalchemy import text

from queue_core.clock import ManualClock
from queue_core.database import Database
from queue_core.errors import TaskNotFound
from queue_core.repositories import TaskRepository
from queue_core.settings import QueueSettings
from tests.workers.conftest import wait_until
from tests.workers.test_runtime import test_handlers
from workers import Worker, WorkerConfig


def _task_gone(tasks: TaskRepository, task_id: int) -> bool:
    try:
        tasks.get(task_id)
    except TaskNotFound:
        return True
    return False


@pytest.mark.parametrize("maintenance", [True, False])
def test_worker_purges_finished_tasks_past_retention(db_url: str, maintenance: bool) -> None:
    settings = QueueSettings(
        retention_days=1,
        maintenance_purge_interval_seconds=0.05,
        maintenance_checkpoint_interval_seconds=0.05,
    )
    db = Database(db_url, settings=settings)
    clock = ManualClock()
    tasks = TaskRepository(db, clock)
    done = tasks.enqueue(type="t.noop").task.task_id
    config = WorkerConfig(poll_interval=0.05, sweep_interval=0.05, maintenance=maintenance)
    worker = Worker(config, registry=test_handlers(), db=db, clock=clock)
    worker.start(timeout=30)
    try:
        wait_until(lambda: tasks.get(done).status.value == "completed", timeout=30)
        kept = tasks.enqueue(type="t.missing_handler").task.task_id  # queued: never purged
        clock.advance(timedelta(days=2).total_seconds())
        if maintenance:
            wait_until(lambda: _task_gone(tasks, done), timeout=30)
            with db.read() as conn:
                holder = conn.execute(
                    text("SELECT holder FROM maintenance_leases WHERE name = 'purge'")
                ).scalar()
            assert holder == worker.worker_id
        else:
            assert worker.housekeeping.scheduler is None
            # Another task run after the clock jump: the loop has gone round many times.
            later = tasks.enqueue(type="t.noop").task.task_id
            wait_until(lambda: tasks.get(later).status.value == "completed", timeout=30)
            time.sleep(0.3)  # several sweep intervals
            assert not _task_gone(tasks, done)
        assert tasks.get(kept).status.value == "queued"
    finally:
        worker.stop(grace=5, timeout=30)
        db.dispose()
