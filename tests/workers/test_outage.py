"""The database goes away for a moment while a worker runs a task: the worker must survive,
keep the finished handler's outcome in memory, and record it once the database is back."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from queue_core.repositories import TaskRepository
from tests.workers.conftest import Workers, wait_for_status, wait_until

PG_CTL = [
    "pg_ctlcluster",
    "--skip-systemctl-redirect",
    None,  # the cluster version, from /etc/postgresql
    "main",
]
# The server stays down past the moment the handler (1 s) finishes, so the worker must meet
# the outage when it records the outcome; a plain restart can be over before that.
PG_DOWN_SECONDS = 2.5


def _pg_restart_command() -> list[str] | None:
    """The pg_ctlcluster prefix for this machine's cluster; None where it cannot be used."""
    if shutil.which("pg_ctlcluster") is None:
        return None
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return None
    versions = sorted(p.name for p in Path("/etc/postgresql").glob("*") if p.is_dir())
    if not versions:
        return None
    return [part if part is not None else versions[-1] for part in PG_CTL]


def test_worker_survives_the_database_going_away(
    backend: str, workers: Workers, tasks: TaskRepository
) -> None:
    if backend == "postgresql" and _pg_restart_command() is None:
        pytest.skip("restarting PostgreSQL needs pg_ctlcluster and root on this machine")
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
        command = _pg_restart_command()
        assert command is not None
        subprocess.run([*command, "stop"], check=True, timeout=60, capture_output=True)
        try:
            time.sleep(PG_DOWN_SECONDS)
        finally:
            subprocess.run([*command, "start"], check=True, timeout=60, capture_output=True)
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
