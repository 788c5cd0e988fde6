"""Inside one process: the database locked away, a failing run loop, demo handlers, signals.

SQLite only where the test holds SQLite's write lock; the subprocess version of the outage
(both backends, PostgreSQL restarted) is in test_outage.py.
"""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

import tests.workers.handlers as handlers
import workers.demo
from queue_core.database import Database
from queue_core.repositories import TaskRepository
from queue_core.settings import QueueSettings
from tests.workers.conftest import wait_for_status, wait_until
from tests.workers.test_runtime import test_handlers
from workers import Registry, Worker, WorkerConfig, default_registry
from workers.signals import handling_stop_signals, stop_signals


@pytest.fixture
def records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "records"
    directory.mkdir()
    monkeypatch.setenv(handlers.RECORD_DIR_ENV, str(directory))
    return directory


@contextlib.contextmanager
def write_lock(url: str) -> Iterator[None]:
    """Hold SQLite's write lock from another connection while inside."""
    path = make_url(url).database
    assert path
    conn = sqlite3.connect(path, isolation_level=None, timeout=10)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        yield
        conn.execute("COMMIT")
    finally:
        conn.close()


def test_outcomes_wait_in_memory_while_sqlite_is_locked(
    sqlite_url: str, records: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = Database(sqlite_url, QueueSettings(sqlite_busy_timeout_ms=50))
    tasks = TaskRepository(Database(sqlite_url))
    worker = Worker(
        WorkerConfig(concurrency=2, lease_seconds=1.0, poll_interval=0.05),
        registry=test_handlers(),
        db=db,
    )
    worker.start()
    try:
        task_id = tasks.enqueue(type="t.log_sleep", payload={"seconds": 0.3}).task.task_id
        wait_until(lambda: handlers.read_records(records), what="the handler to start")
        with write_lock(sqlite_url):
            time.sleep(1.5)  # the handler finishes meanwhile; claims and renewals fail
            assert tasks.get(task_id).status.value == "leased"
        done = wait_for_status(tasks, task_id, "completed", timeout=15)
        assert done.attempts == 1
        assert "working" in [log.message for log in tasks.logs(task_id)]
        retries = worker.metrics.registry.get_sample_value
        failed_ops = {
            op
            for op in ("claim", "complete", "write task logs", "renew leases")
            if retries("prismq_worker_db_unavailable_retries_total", {"operation": op})
        }
        assert failed_ops & {"complete", "write task logs"}
        assert "claim" in failed_ops
        later = tasks.enqueue(type="t.noop").task.task_id
        wait_for_status(tasks, later, "completed", timeout=15)

        # Stopping while the database is still locked: the worker gives up after a bound.
        monkeypatch.setattr("workers.supervisor.FINAL_RECORD_SECONDS", 0.3)
        monkeypatch.setattr("workers.supervisor.IMMEDIATE_RECORD_SECONDS", 0.3)
        monkeypatch.setattr("workers.runtime.IMMEDIATE_RECORD_SECONDS", 0.3)
        stuck = tasks.enqueue(type="t.log_sleep", payload={"seconds": 0.2}).task.task_id
        wait_until(
            lambda: len(handlers.read_records(records)) == 2, what="the second task to start"
        )
        with write_lock(sqlite_url):
            started = time.monotonic()
            worker.stop(grace=0.5, timeout=20)
            assert time.monotonic() - started < 10
        assert tasks.get(stuck).status.value == "leased"  # its lease expires; it runs again
    finally:
        worker.stop(grace=0, timeout=20)
        db.dispose()
        tasks.db.dispose()


def test_a_failing_run_loop_still_releases_its_tasks(db: Database, records: Path) -> None:
    tasks = TaskRepository(db)
    task_id = tasks.enqueue(type="t.sync_wait", payload={"seconds": 30}).task.task_id
    worker = Worker(WorkerConfig(poll_interval=0.05), registry=test_handlers(), db=db)
    worker.start()
    wait_until(lambda: handlers.read_records(records), what="the handler to start")

    def broken(now: float) -> None:
        raise RuntimeError("a bug in the run loop")

    worker.executor.enforce_time_limits = broken  # type: ignore[method-assign]
    worker.wake()
    with pytest.raises(RuntimeError, match="a bug in the run loop"):
        worker.join(20)
    released = tasks.get(task_id)
    assert (released.status.value, released.attempts) == ("queued", 0)


def test_demo_handlers(db: Database) -> None:
    registry = Registry()
    for handler in default_registry:
        if handler.func.__module__ == workers.demo.__name__:
            registry.register(handler.name, handler.func)
    assert registry.names() == ["demo.echo", "demo.fail", "demo.sleep"]
    tasks = TaskRepository(db)
    echo = tasks.enqueue(type="demo.echo", payload={"n": 1}).task.task_id
    nap = tasks.enqueue(type="demo.sleep", payload={"seconds": 0.05}).task.task_id
    retry = tasks.enqueue(type="demo.fail", max_attempts=1).task.task_id
    dead = tasks.enqueue(type="demo.fail", payload={"permanent": True}).task.task_id
    long = tasks.enqueue(type="demo.sleep", payload={"seconds": 30}).task.task_id
    worker = Worker(
        WorkerConfig(concurrency=4, poll_interval=0.05, lease_seconds=1.0),
        registry=registry,
        db=db,
    )
    worker.start()
    try:
        assert wait_for_status(tasks, echo, "completed").result == {"echo": {"n": 1}}
        slept = wait_for_status(tasks, nap, "completed").result
        assert isinstance(slept, dict)
        assert slept["finished"] is True
        assert wait_for_status(tasks, retry, "failed").error_message == (
            "RuntimeError: demo.fail failed on purpose"
        )
        permanent = wait_for_status(tasks, dead, "failed")
        assert (permanent.attempts, permanent.error_message) == (
            1,
            "PermanentError: demo.fail failed on purpose",
        )
        wait_until(lambda: tasks.get(long).status.value == "leased", what="demo.sleep to run")
        assert tasks.cancel(long).immediate is False
        wait_for_status(tasks, long, "cancelled", timeout=15)
        assert any("stopped early" in log.message for log in tasks.logs(long))
    finally:
        worker.stop(grace=1, timeout=20)


def test_signal_handlers_only_in_the_main_thread() -> None:
    assert {signal.SIGINT, signal.SIGTERM} <= set(stop_signals())
    seen: list[bool] = []

    def in_thread() -> None:
        with handling_stop_signals(lambda signum: None) as installed:
            seen.append(installed)

    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join(5)
    assert seen == [False]
    before = signal.getsignal(signal.SIGTERM)
    received: list[int] = []
    with handling_stop_signals(received.append) as installed:
        assert installed
        signal.raise_signal(signal.SIGTERM)
    assert received == [signal.SIGTERM]
    assert signal.getsignal(signal.SIGTERM) == before
