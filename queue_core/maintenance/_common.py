"""What the maintenance jobs share: the SQLite file and a raw connection to it, sizes, errors."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection

from queue_core.database import Database
from queue_core.errors import DatabaseUnavailable, QueueError

Progress = Callable[[int], None]
"""Called with the number of units (pages, rows) done since the previous call."""

# The tables the queue owns: maintenance never touches anything else in a shared database.
QUEUE_TABLES = ("task_queue", "task_logs", "workers", "task_queue_clock", "maintenance_leases")


class NotSupportedOnBackend(QueueError):
    """The operation does not apply to this database; the message says what to do instead."""


class MaintenanceFailed(QueueError):
    """A maintenance operation ran but its result is not trustworthy (e.g. integrity_check)."""


def is_sqlite(db: Database) -> bool:
    return db.dialect == "sqlite"


def sqlite_path(db: Database) -> Path:
    """The SQLite database file; maintenance on in-memory databases makes no sense."""
    database = db.engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        raise NotSupportedOnBackend(f"{db.safe_url} is not an SQLite database file")
    return Path(database)


def wal_path(path: Path) -> Path:
    return path.with_name(path.name + "-wal")


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


@dataclass(frozen=True)
class FileSizes:
    database_bytes: int
    wal_bytes: int

    @classmethod
    def of(cls, db: Database) -> FileSizes:
        path = sqlite_path(db)
        return cls(file_size(path), file_size(wal_path(path)))


@contextmanager
def raw_sqlite(db: Database) -> Iterator[sqlite3.Connection]:
    """A pooled sqlite3 connection outside any transaction (checkpoint and VACUUM need that).

    It carries the engine's PRAGMAs (WAL, busy_timeout, foreign_keys). Busy errors become
    :class:`DatabaseUnavailable`, as they do for the repositories.
    """
    pooled = db.engine.raw_connection()
    try:
        conn = pooled.driver_connection
        assert isinstance(conn, sqlite3.Connection)
        try:
            yield conn
        except sqlite3.OperationalError as exc:
            if conn.in_transaction:
                conn.rollback()
            if db.backend.is_unavailable(exc):
                raise DatabaseUnavailable(f"database unavailable: {exc}") from exc
            raise
    finally:
        pooled.close()


@contextmanager
def autocommit(db: Database) -> Iterator[Connection]:
    """A PostgreSQL connection outside a transaction block (VACUUM refuses to run inside one)."""
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        yield conn


def quoted_tables() -> str:
    return ", ".join(QUEUE_TABLES)
