"""The database goes away for a moment while a worker runs a task: the worker must survive,
keep the finished handler's outcome in memory, and record it once the database is back."""

from __future__ import annotations

import shutil
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from queue_core import migrate
from queue_core.database import Database
from queue_core.repositories import TaskRepository
from queue_core.settings import sqlite_url_for
from tests import throwaway_pg
from tests.workers.conftest import Workers, wait_for_status, wait_until

# The server stays down past the moment the handler (1 s) finishes, so the worker must meet
# the outage when it records the outcome; a plain restart can be over before that.
PG_DOWN_SECONDS = 2.5


@pytest.fixture
def db_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """SQLite as everywhere; PostgreSQL is a cluster of this test's own (tests/throwaway_pg.py),
    since the test stops the server: the machine's shared cluster is never touched."""
    if backend == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        target = tmp_path / "queue.db"
        shutil.copyfile(template, target)
        yield sqlite_url_for(target)
        return
    reason = throwaway_pg.unavailable_reason()
    if reason is not None:
        pytest.skip(f"the PostgreSQL outage needs a throwaway cluster: {reason}")
    with throwaway_pg.throwaway_cluster() as cluster:
        request.node.stash[CLUSTER] = cluster
        db = Database(cluster.url)
        migrate.upgrade(db)
        db.dispose()
        yield cluster.url


CLUSTER = pytest.StashKey[throwaway_pg.ThrowawayCluster]()


def test_worker_survives_the_database_going_away(
    backend: str, workers: Workers, tasks: TaskRepository, request: pytest.FixtureRequest
) -> None:
    worker = workers.start(
        "--lease-seconds",
        "15",
        env={"PRISMQ_QUEUE_SQLITE_BUSY_TIMEOUT_MS": "100"},
    )
    task_id = tasks.enqueue(type="t.sleep", payload={"seconds": 1.0}).task.task_id
    wait_until(lambda: workers.events("start", task_id), what="the handler to start")

    if backend == "sqlite":
        _hold_sqlite_exclusive_lock(tasks.db.url, seconds=3.0)
    else:
        cluster = request.node.stash[CLUSTER]
        cluster.stop()
        try:
            time.sleep(PG_DOWN_SECONDS)
        finally:
            cluster.start()
        tasks.db.dispose()  # our own pooled connections died with the server

    done = wait_for_status(tasks, task_id, "completed", timeout=30)
    assert (done.attempts, done.result) == (1, {"slept": 1.0})
    assert worker.proc.poll() is None, worker.output()  # still running
    assert "database unavailable" in worker.output()

    after = tasks.enqueue(type="t.noop").task.task_id  # and it still works afterwards
    wait_for_status(tasks, after, "completed", timeout=30)
    worker.signal_stop()
    assert worker.wait(30) == 0, worker.output()


def _hold_sqlite_exclusive_lock(url: str, seconds: float) -> None:
    """Take the write lock from another connection, for longer than the worker's
    busy_timeout (100 ms) and past the moment its handler finishes."""
    path = make_url(url).database
    assert path
    conn = sqlite3.connect(path, isolation_level=None, timeout=10)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        time.sleep(seconds)
        conn.execute("COMMIT")
    finally:
        conn.close()
