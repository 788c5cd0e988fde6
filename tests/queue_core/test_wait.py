"""TaskRepository.wait (CONTRACT §9, issue 13 §5), on both backends."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import event, text

from queue_core.database import Database
from queue_core.errors import TaskNotFound, TaskWaitTimeout
from queue_core.repositories import LeaseRepository, TaskRepository
from queue_core.settings import (
    PG_LISTENER_WARMUP_SECONDS,
    WAIT_FALLBACK_SECONDS,
    WAIT_POLL_INTERVAL_SECONDS,
)
from queue_core.states import TaskStatus

# Generous: the machine may be loaded; what matters is "soon after", not "after the timeout".
PROMPT_SECONDS = 10.0


def _finish_later(
    db: Database, task_type: str, delay: float, fail: bool = False
) -> threading.Thread:
    """Claims the task and completes (or permanently fails) it after ``delay`` seconds."""

    def run() -> None:
        time.sleep(delay)
        leases = LeaseRepository(db)
        (lease,) = leases.claim("w-wait", [task_type])
        if fail:
            leases.fail(lease, "boom", permanent=True)
        else:
            leases.complete(lease, {"ok": True})

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def tasks(db: Database) -> TaskRepository:
    return TaskRepository(db)


def test_wait_returns_as_soon_as_the_task_completes(db: Database, tasks: TaskRepository) -> None:
    task_id = tasks.enqueue(type="w.done").task.task_id
    finisher = _finish_later(db, "w.done", 0.5)
    started = time.monotonic()
    done = tasks.wait(task_id, timeout=60)
    elapsed = time.monotonic() - started
    finisher.join(10)
    assert done.status is TaskStatus.COMPLETED
    assert done.result == {"ok": True}
    assert 0.4 < elapsed < PROMPT_SECONDS


def test_wait_returns_failed_and_cancelled_tasks_too(db: Database, tasks: TaskRepository) -> None:
    failing = tasks.enqueue(type="w.fail").task.task_id
    _finish_later(db, "w.fail", 0.2, fail=True).join(10)
    assert tasks.wait(failing, timeout=5).status is TaskStatus.FAILED
    cancelled = tasks.enqueue(type="w.cancel").task.task_id
    tasks.cancel(cancelled)
    assert tasks.wait(cancelled).status is TaskStatus.CANCELLED


def test_wait_raises_timeout_error_at_the_deadline(tasks: TaskRepository) -> None:
    task_id = tasks.enqueue(type="w.never").task.task_id
    started = time.monotonic()
    with pytest.raises(TimeoutError) as raised:
        tasks.wait(task_id, timeout=0.3)
    assert 0.3 <= time.monotonic() - started < PROMPT_SECONDS
    assert isinstance(raised.value, TaskWaitTimeout)
    assert raised.value.task.status is TaskStatus.QUEUED
    with pytest.raises(TimeoutError):
        tasks.wait(task_id, timeout=0)


def test_wait_for_an_unknown_task_is_task_not_found(tasks: TaskRepository) -> None:
    with pytest.raises(TaskNotFound):
        tasks.wait(12345, timeout=5)


def test_async_wait_returns_once_terminal(db: Database, tasks: TaskRepository) -> None:
    import asyncio

    task_id = tasks.enqueue(type="w.async").task.task_id
    _finish_later(db, "w.async", 0.3)
    done = asyncio.run(tasks.wait_async(task_id, timeout=60))
    assert done.status is TaskStatus.COMPLETED
    other = tasks.enqueue(type="w.async2").task.task_id
    with pytest.raises(TaskWaitTimeout):
        asyncio.run(tasks.wait_async(other, timeout=0.2))


@pytest.fixture
def statements(db: Database) -> Iterator[list[str]]:
    seen: list[str] = []

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    yield seen
    event.remove(db.engine, "before_cursor_execute", count)


@pytest.mark.slow
def test_a_ten_second_wait_is_no_busy_loop(
    db: Database, tasks: TaskRepository, statements: list[str], backend: str
) -> None:
    """Issue 13 §5: count the statements a 10-second wait issues. SQLite: one short read per
    poll interval (the worker's), so about 10 / 0.5 = 20. PostgreSQL: the wait sleeps on the
    shared LISTEN and re-reads only every WAIT_FALLBACK_SECONDS, so a handful."""
    if backend == "postgresql":
        # The notification channel is shared with other sessions on the server: ids of our
        # own, so that nobody else's finished task wakes this wait.
        with db.engine.begin() as conn:
            conn.execute(
                text("SELECT setval(pg_get_serial_sequence('task_queue', 'id'), :start)"),
                {"start": random.randrange(10**12, 2 * 10**12)},
            )
    task_id = tasks.enqueue(type="w.idle").task.task_id
    statements.clear()
    held: list[float] = []
    checked_out: dict[int, float] = {}
    pool = db.engine.pool

    def on_checkout(dbapi_conn: object, record: object, proxy: object) -> None:
        checked_out[id(record)] = time.monotonic()

    def on_checkin(dbapi_conn: object, record: object) -> None:
        if id(record) in checked_out:
            held.append(time.monotonic() - checked_out.pop(id(record)))

    event.listen(pool, "checkout", on_checkout)
    event.listen(pool, "checkin", on_checkin)
    try:
        with pytest.raises(TimeoutError):
            tasks.wait(task_id, timeout=10)
    finally:
        event.remove(pool, "checkout", on_checkout)
        event.remove(pool, "checkin", on_checkin)
    reads = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    status_reads = sum("task_queue.status" in s and "task_queue.payload" not in s for s in reads)
    if backend == "postgresql":
        # The first read, one when the listener connects, one per poll interval while it
        # warms up (every writer has seen it after that), one per fallback interval, and the
        # whole task at the deadline (two SELECTs).
        assert db.finished_waiters.live
        warmup = PG_LISTENER_WARMUP_SECONDS / WAIT_POLL_INTERVAL_SECONDS
        assert 2 <= status_reads <= 2 + warmup + 10 / WAIT_FALLBACK_SECONDS, reads
        assert len(reads) <= status_reads + 2, reads
    else:
        expected = 10 / WAIT_POLL_INTERVAL_SECONDS
        assert 5 <= len(reads) <= expected + 3, reads
        assert status_reads >= 5
    # Besides the reads, at most their transaction brackets (BEGIN on SQLite).
    assert len(statements) <= 2 * len(reads), statements
    # Each read holds a connection only for itself: none is kept between reads.
    assert not checked_out
    # One connection per status read; the last read, of the whole task with its dependencies,
    # is two SELECTs on one connection.
    assert len(held) == len(reads) - 1
    assert max(held) < 2.0, held
