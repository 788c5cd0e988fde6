"""The hot path's DBAPI connection (queue_core/dialects/connections.py): shared, bounded,
recoverable."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from queue_core.clock import ManualClock
from queue_core.database import Database
from queue_core.errors import DatabaseUnavailable, SchemaMissing
from queue_core.repositories import LeaseRepository, TaskRepository
from queue_core.settings import QueueSettings, sqlite_url_for


def test_many_repositories_do_not_exhaust_the_pool(db: Database, clock: ManualClock) -> None:
    """The pool holds 15 connections; 40 live repositories each claim and complete."""
    tasks = TaskRepository(db, clock)
    for _ in range(40):
        tasks.enqueue(type="t")
    repositories = [LeaseRepository(db, clock) for _ in range(40)]
    for n, leases in enumerate(repositories):
        [claimed] = leases.claim(f"w{n}", ["t"])
        leases.complete(claimed.lease)
    assert tasks.stats().completed_tasks == 40


def test_nested_transaction_fails_instead_of_hanging(sqlite_url: str) -> None:
    db = Database(sqlite_url)
    try:
        writer = db.raw
        with writer.transaction(), pytest.raises(RuntimeError, match="nested"):  # noqa: SIM117
            with writer.transaction():
                pass
        with writer.transaction() as cursor:  # and it is usable afterwards
            cursor.execute("SELECT 1")
    finally:
        db.dispose()


def test_busy_database_raises_database_unavailable_then_recovers(sqlite_url: str) -> None:
    db = Database(sqlite_url, QueueSettings(sqlite_busy_timeout_ms=50))
    clock = ManualClock()
    TaskRepository(db, clock).enqueue(type="t")
    leases = LeaseRepository(db, clock)
    blocker = sqlite3.connect(make_url(sqlite_url).database, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        with pytest.raises(DatabaseUnavailable):
            leases.claim("w", ["t"])
        blocker.execute("ROLLBACK")
        [claimed] = leases.claim("w", ["t"])
        leases.complete(claimed.lease)
    finally:
        blocker.close()
        db.dispose()


def test_dispose_closes_the_kept_connection_and_the_next_claim_reopens(
    sqlite_url: str,
) -> None:
    db = Database(sqlite_url)
    clock = ManualClock()
    tasks, leases = TaskRepository(db, clock), LeaseRepository(db, clock)
    tasks.enqueue(type="t")
    tasks.enqueue(type="t")
    leases.claim("w", ["t"])
    db.dispose()
    assert len(leases.claim("w", ["t"])) == 1
    db.dispose()


def test_unmigrated_database_raises_schema_missing(tmp_path: Path) -> None:
    db = Database(sqlite_url_for(tmp_path / "empty.db"))
    try:
        with pytest.raises(SchemaMissing):
            LeaseRepository(db).claim("w", ["t"])
    finally:
        db.dispose()
