"""Waits woken by NOTIFY on PostgreSQL (issue 13 §5): every transaction that ends tasks
announces them on PG_FINISHED_CHANNEL, and the waits of a Database share one LISTEN.

The channel is shared with every other test session on the server, so each test moves the
task id sequence somewhere no other session's ids are (``_ids_of_our_own``) and only looks at
notifications naming its own ids.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from queue_core.clock import ManualClock
from queue_core.database import Database
from queue_core.dialects.finished import finished_payload, parse_payload
from queue_core.dialects.pg_listener import ListenerPresence, PgFinishedListener, listen_connection
from queue_core.repositories import LeaseRepository, TaskRepository
from queue_core.schemas import TaskCreate
from queue_core.settings import PG_FINISHED_CHANNEL, WAIT_FALLBACK_SECONDS
from queue_core.states import TaskStatus
from tests.api.conftest import child_env

pytestmark = pytest.mark.postgres

# Waits must end this soon after the task's transaction commits (the fallback re-read
# would take WAIT_FALLBACK_SECONDS).
PROMPT_SECONDS = 0.3


@pytest.fixture
def pg_db(backend: str, db: Database) -> Database:
    if backend != "postgresql":
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's")
    _ids_of_our_own(db)
    return db


def _ids_of_our_own(db: Database) -> None:
    start = random.randrange(10**12, 2 * 10**12)
    with db.engine.begin() as conn:
        conn.execute(
            text("SELECT setval(pg_get_serial_sequence('task_queue', 'id'), :start)"),
            {"start": start},
        )


@pytest.fixture
def heard(pg_db: Database) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    conn = listen_connection(pg_db.engine.url, PG_FINISHED_CHANNEL)
    yield conn
    conn.close()


def _announced(conn: psycopg.Connection[tuple[object, ...]], ours: set[int]) -> list[set[int]]:
    """The id sets of the notifications that name any of ``ours`` (one per transaction)."""
    found = []
    for note in conn.notifies(timeout=0.5):
        ids = parse_payload(note.payload)
        if ids is not None and ours & set(ids):
            found.append(set(ids))
    return found


def test_payload_lists_the_ids_or_is_empty_when_too_long() -> None:
    assert finished_payload([3, 1, 2, 2], 100) == "1,2,3"
    assert finished_payload(range(10_000), 7900) == ""
    assert parse_payload("1,2,3") == [1, 2, 3]
    assert parse_payload("") is None
    assert parse_payload("x") is None


def test_every_transaction_that_ends_tasks_announces_them_once(
    pg_db: Database, heard: psycopg.Connection[tuple[object, ...]]
) -> None:
    clock = ManualClock()
    tasks = TaskRepository(pg_db, clock)
    leases = LeaseRepository(pg_db, clock)
    enqueue = tasks.enqueue

    # Completed, and failed for good: one notification each.
    done = enqueue(type="n.done").task.task_id
    (lease,) = leases.claim("w", ["n.done"])
    leases.complete(lease, 1)
    assert _announced(heard, {done}) == [{done}]
    failed = enqueue(type="n.fail").task.task_id
    (lease,) = leases.claim("w", ["n.fail"])
    leases.fail(lease, "boom", permanent=True)
    assert _announced(heard, {failed}) == [{failed}]

    # A retry is no end: nothing.
    retried = enqueue(type="n.retry").task.task_id
    (lease,) = leases.claim("w", ["n.retry"])
    leases.fail(lease, "again")
    assert tasks.get(retried).status is TaskStatus.QUEUED
    assert _announced(heard, {retried}) == []

    # A failure that cancels its dependents, transitively: one notification for all three.
    root = enqueue(type="n.root", max_attempts=1).task.task_id
    child = enqueue(type="n.child", depends_on=[root]).task.task_id
    grandchild = enqueue(type="n.child", depends_on=[child]).task.task_id
    (lease,) = leases.claim("w", ["n.root"])
    leases.fail(lease, "boom")
    assert _announced(heard, {root}) == [{root, child, grandchild}]

    # A queued task cancelled by an operator (REST, dashboard, CLI), with its dependent.
    queued = enqueue(type="n.cancel").task.task_id
    dependent = enqueue(type="n.child", depends_on=[queued]).task.task_id
    tasks.cancel(queued, actor="dashboard")
    assert _announced(heard, {queued}) == [{queued, dependent}]

    # A running task asked to stop: nothing until its worker ends it.
    running = enqueue(type="n.running").task.task_id
    (lease,) = leases.claim("w", ["n.running"])
    tasks.cancel(running)
    assert _announced(heard, {running}) == []
    leases.mark_cancelled(lease)
    assert _announced(heard, {running}) == [{running}]

    # Recovery of an expired lease with no attempt left: failed, announced.
    expiring = enqueue(type="n.expire", max_attempts=1).task.task_id
    leases.claim("w", ["n.expire"], lease_seconds=1)
    clock.advance(5)
    report = leases.recover_expired()
    assert report.failed == [expiring]
    assert _announced(heard, {expiring}) == [{expiring}]


def _complete_elsewhere(url: str, task_type: str, delay: float) -> subprocess.Popen[str]:
    """Another process claims and completes the task after ``delay`` seconds, and prints the
    wall clock time just after its transaction committed."""
    script = textwrap.dedent(
        f"""
        import sys, time
        from queue_core.database import Database
        from queue_core.repositories import LeaseRepository
        db = Database({url!r})
        leases = LeaseRepository(db)
        leases.claim("w-warm", ["nothing.of.this.type"])  # connect before the clock starts
        time.sleep({delay})
        (lease,) = leases.claim("w-other", [{task_type!r}])
        leases.complete(lease, {{"by": "another process"}})
        print(time.time(), flush=True)
        db.dispose()
        """
    )
    return subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=child_env()
    )


def _until_live(db: Database) -> None:
    """Start the Database's listener and wait out its warm-up (every process has seen it)."""
    listener = db.finished_waiters
    subscription = listener.subscribe(0, lambda: None)
    deadline = time.monotonic() + 30
    while not listener.live and time.monotonic() < deadline:
        time.sleep(0.05)
    listener.unsubscribe(subscription)
    assert listener.live


def test_a_wait_ends_moments_after_another_process_completes_the_task(
    pg_db: Database,
) -> None:
    tasks = TaskRepository(pg_db)
    task_id = tasks.enqueue(type="n.elsewhere").task.task_id
    _until_live(pg_db)
    other = _complete_elsewhere(pg_db.url, "n.elsewhere", 2.0)
    try:
        done = tasks.wait(task_id, timeout=30)
        returned = time.time()
        out, _ = other.communicate(timeout=30)
    finally:
        other.kill()
    assert done.status is TaskStatus.COMPLETED
    assert done.result == {"by": "another process"}
    committed = float(out.split()[-1])
    assert pg_db.finished_waiters.live
    assert returned - committed < PROMPT_SECONDS, returned - committed


def test_many_async_waits_share_one_listening_connection(pg_db: Database) -> None:
    """Five hundred concurrent async waits: one LISTEN connection and one thread for them
    all, none of the loop's default thread pool held while they sleep, and all of them end
    moments after one transaction completes their tasks."""
    waits = 500
    tasks = TaskRepository(pg_db)
    leases = LeaseRepository(pg_db)
    ids = [t.task_id for t in tasks.enqueue_many([TaskCreate(type="n.many") for _ in range(waits)])]
    listener = pg_db.finished_waiters
    assert isinstance(listener, PgFinishedListener)
    threads_before = threading.active_count()

    async def scenario() -> tuple[list[TaskStatus], float, int]:
        running = [asyncio.create_task(tasks.wait_async(i, timeout=60)) for i in ids]
        while listener.waiting < waits or not listener.live:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # every wait has read its task and sleeps
        threads_waiting = threading.active_count()
        claimed = await asyncio.to_thread(leases.claim, "w", ["n.many"], limit=waits)
        await asyncio.to_thread(leases.complete_many, [(c.lease, None) for c in claimed])
        committed = time.monotonic()
        done = await asyncio.gather(*running)
        return [t.status for t in done], time.monotonic() - committed, threads_waiting

    statuses, after_commit, threads_waiting = asyncio.run(scenario())
    assert statuses == [TaskStatus.COMPLETED] * waits
    assert listener.connections == 1
    # The listener's thread, and the few threads of the pool the reads ran on (none of
    # which is held while the waits sleep: 500 waits on a pool of a few threads).
    assert threads_waiting - threads_before <= 1 + 32
    # All 500 re-read their task and answer: well before any fallback re-read.
    assert after_commit < WAIT_FALLBACK_SECONDS / 2, after_commit


def _dead_listener_url(db: Database) -> str:
    """The queue's URL with a port nothing listens on: LISTEN fails, queries do not."""
    return make_url(db.url).set(port=1).render_as_string(hide_password=False)


def _finish_later(db: Database, task_type: str, delay: float) -> threading.Thread:
    def run() -> None:
        time.sleep(delay)
        leases = LeaseRepository(db)
        (lease,) = leases.claim("w-later", [task_type])
        leases.complete(lease, None)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_wait_polls_when_listen_fails(pg_db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    dead = PgFinishedListener(make_url(_dead_listener_url(pg_db)), retry_seconds=60)
    monkeypatch.setattr(pg_db.dialect, "finished_listener", lambda engine: dead)
    tasks = TaskRepository(pg_db)
    task_id = tasks.enqueue(type="n.poll").task.task_id
    _finish_later(pg_db, "n.poll", 0.5)
    started = time.monotonic()
    assert tasks.wait(task_id, timeout=30).status is TaskStatus.COMPLETED
    # Found by the poll (0.5 s), long before the fallback re-read of a live listener.
    assert time.monotonic() - started < WAIT_FALLBACK_SECONDS - 1
    assert not dead.live
    assert dead.connections == 0
    dead.close()


@pytest.mark.slow
def test_a_listener_that_hears_nothing_gives_way_to_polling(
    pg_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PgBouncer in transaction mode: LISTEN succeeds and nothing arrives. The first wait
    finds its task on the fallback re-read; from then on waits poll."""
    deaf = PgFinishedListener(pg_db.engine.url, channel="prismq_queue_nobody_sends_here")
    monkeypatch.setattr(pg_db.dialect, "finished_listener", lambda engine: deaf)
    _until_live(pg_db)
    tasks = TaskRepository(pg_db)
    first = tasks.enqueue(type="n.deaf").task.task_id
    _finish_later(pg_db, "n.deaf", 0.5)
    started = time.monotonic()
    assert tasks.wait(first, timeout=30).status is TaskStatus.COMPLETED
    assert WAIT_FALLBACK_SECONDS - 0.5 < time.monotonic() - started < 2 * WAIT_FALLBACK_SECONDS
    assert not deaf.live
    second = tasks.enqueue(type="n.deaf2").task.task_id
    _finish_later(pg_db, "n.deaf2", 0.5)
    started = time.monotonic()
    assert tasks.wait(second, timeout=30).status is TaskStatus.COMPLETED
    assert time.monotonic() - started < WAIT_FALLBACK_SECONDS - 1
    deaf.close()


def test_the_listener_ends_when_no_wait_needs_it(pg_db: Database) -> None:
    listener = PgFinishedListener(pg_db.engine.url, idle_seconds=0.5)
    woken = threading.Event()
    subscription = listener.subscribe(1, woken.set)
    deadline = time.monotonic() + 10
    while not listener.live and time.monotonic() < deadline:
        time.sleep(0.05)
    assert listener.live
    assert woken.is_set()  # going live wakes every wait: it may have missed a notification
    listener.unsubscribe(subscription)
    while listener.live and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not listener.live
    # The next wait starts it again.
    listener.subscribe(2, woken.set)
    while not listener.live and time.monotonic() < deadline:
        time.sleep(0.05)
    assert listener.live
    assert listener.connections == 2
    listener.close()


def test_writers_notify_only_while_a_listener_is_there(pg_db: Database) -> None:
    """A drain nobody waits on sends no NOTIFY: a writer looks for a listening session (by
    its application_name) at most once per lookup interval."""
    name = f"prismq-test-listener-{random.randrange(10**9)}"
    presence = ListenerPresence(name, lookup_seconds=0.3)
    raw = pg_db.engine.raw_connection()

    def someone_listens() -> bool:
        # A transaction each, as a writer's: pg_stat_activity is read once per transaction.
        try:
            return presence.someone_listens(raw.cursor())
        finally:
            raw.commit()

    try:
        assert not someone_listens()
        listener = listen_connection(pg_db.engine.url, PG_FINISHED_CHANNEL, name)
        try:
            assert not someone_listens()  # the last look is still trusted
            assert presence.lookups == 1
            time.sleep(0.35)
            assert someone_listens()
            assert presence.lookups == 2
        finally:
            listener.close()
        time.sleep(0.35)
        assert not someone_listens()
    finally:
        raw.close()
