"""PostgreSQL's hot path: one-statement enqueue (task, log row and NOTIFY in one round trip)
and the connections it keeps between transactions, which must survive a dropped server
connection."""

from __future__ import annotations

import contextlib
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from queue_core.claims import ClaimRequest
from queue_core.clock import ManualClock
from queue_core.database import Database
from queue_core.dialects import connections
from queue_core.errors import DatabaseUnavailable
from queue_core.repositories import LeaseRepository, TaskRepository, TypeRepository
from queue_core.settings import PG_NOTIFY_CHANNEL

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_db(backend: str, db: Database) -> Database:
    if backend != "postgresql":
        pytest.skip("PostgreSQL's hot path")
    return db


def _listener(db: Database) -> psycopg.Connection[tuple[object, ...]]:
    url = db.engine.url
    conn = psycopg.connect(
        host=url.host,
        port=url.port,
        user=url.username,
        password=url.password,
        dbname=url.database,
        autocommit=True,
    )
    conn.execute(f"LISTEN {PG_NOTIFY_CHANNEL}")
    return conn


def _terminate_kept_connections(db: Database) -> None:
    """The server drops the hot path's idle connections (and only those: the server is
    shared with other test sessions)."""
    pids = [
        conn.driver_connection.info.backend_pid for conn, _ in connections.idle_for(db.engine).idle
    ]
    assert pids
    with db.engine.connect() as admin:
        for pid in pids:
            admin.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})")


def _notified_by(conn: psycopg.Connection[tuple[object, ...]], db: Database) -> bool:
    """A notification from one of the hot path's connections arrived (the channel is shared
    with whatever else uses this server, so other senders are ignored)."""
    ours = {c.driver_connection.info.backend_pid for c, _ in connections.idle_for(db.engine).idle}
    return any(n.pid in ours for n in conn.notifies(timeout=0.5))


def test_one_statement_enqueue_logs_and_notifies_only_due_tasks(
    pg_db: Database, clock: ManualClock
) -> None:
    tasks = TaskRepository(pg_db, clock)
    listener = _listener(pg_db)
    try:
        due = tasks.enqueue(type="t", payload={"n": 1}).task
        assert _notified_by(listener, pg_db)
        later = tasks.enqueue(type="t", run_after_utc=clock() + timedelta(minutes=5)).task
        assert not _notified_by(listener, pg_db)
    finally:
        listener.close()
    assert [log.details for log in tasks.logs(due.task_id)] == [
        {"event": "enqueued", "type": "t", "priority": 100}
    ]
    [delayed_log] = tasks.logs(later.task_id)
    assert delayed_log.details is not None
    assert delayed_log.details["run_after_utc"] == later.run_after_utc.isoformat()
    assert tasks.get(due.task_id) == due


def test_kept_connection_dropped_by_the_server_is_replaced(
    pg_db: Database, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    tasks = TaskRepository(pg_db, clock)
    leases = LeaseRepository(pg_db, clock)
    tasks.enqueue(type="t")  # a connection is now kept
    _terminate_kept_connections(pg_db)
    # Idle long enough to be checked: the dead connection is noticed and replaced.
    monkeypatch.setattr(connections, "PG_PING_AFTER_IDLE_SECONDS", 0.0)
    assert tasks.enqueue(type="t").created
    [claimed] = leases.claim("w", ["t"], limit=1)
    leases.complete(claimed.lease)


def test_unchecked_dead_connection_surfaces_as_unavailable_then_recovers(
    pg_db: Database, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Used again at once, a connection is not pinged; if the server dropped it meanwhile the
    call fails as DatabaseUnavailable (retryable), and the next one runs on a new one."""
    monkeypatch.setattr(connections, "PG_PING_AFTER_IDLE_SECONDS", 3600.0)
    tasks = TaskRepository(pg_db, clock)
    tasks.enqueue(type="t")
    _terminate_kept_connections(pg_db)
    with contextlib.suppress(DatabaseUnavailable):  # the statement met the dead connection
        tasks.enqueue(type="t")
    assert tasks.enqueue(type="t").created


class _CountingCursor:
    """A DBAPI cursor that counts the statements run on it."""

    def __init__(self, cursor: Any) -> None:
        self.cursor = cursor
        self.statements: list[str] = []

    def execute(self, statement: str, params: Any = None) -> Any:
        self.statements.append(" ".join(statement.split())[:40])
        return self.cursor.execute(statement, params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.cursor, name)


def test_claim_leaving_slots_free_costs_two_statements_without_limits(
    pg_db: Database, clock: ManualClock
) -> None:
    """Setup and the limited types in one round trip, then the claim: a worker that uses no
    flow control pays no statement for it, even when the claim leaves slots free (issue 13)."""
    tasks = TaskRepository(pg_db, clock)
    claimer = LeaseRepository(pg_db, clock).claimer("fifo")
    tasks.enqueue(type="t")
    for expected in (1, 0):  # one task of the five asked for, then none
        with pg_db.raw.transaction() as raw:
            cursor = _CountingCursor(raw)
            got = claimer.claim(cursor, ClaimRequest("w", ["t"], {}, 5, 30.0), clock())
        assert len(got) == expected
        assert len(cursor.statements) == 2, cursor.statements
    TypeRepository(pg_db, clock).set_limits("t", max_running=5)
    tasks.enqueue(type="t")
    with pg_db.raw.transaction() as raw:
        cursor = _CountingCursor(raw)
        [task] = claimer.claim(cursor, ClaimRequest("w", ["t"], {}, 5, 30.0), clock())
    assert task.type == "t"  # served by the limited claim
    assert len(cursor.statements) > 2
