"""What the maintenance jobs share: the SQLite file and a raw connection to it, sizes, errors.

What differs between the databases is asked of the Dialect (``db.dialect``); this module only
names the file-level helpers that backup and restore, which copy SQLite files, need.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from queue_core.database import Database
from queue_core.dialects.sqlite import SqliteDialect, file_size
from queue_core.dialects.sqlite import raw_sqlite as _raw_sqlite
from queue_core.errors import NotSupportedOnBackend, QueueError

Progress = Callable[[int], None]
"""Called with the number of units (pages, rows) done since the previous call."""

__all__ = [
    "FileSizes",
    "MaintenanceFailed",
    "NotSupportedOnBackend",
    "Progress",
    "database_file",
    "file_size",
    "raw_sqlite",
]


class MaintenanceFailed(QueueError):
    """A maintenance operation ran but its result is not trustworthy (e.g. integrity_check)."""


def database_file(db: Database, not_a_file: str) -> Path:
    """The database file; raises NotSupportedOnBackend with ``not_a_file`` for a server
    database."""
    path = db.dialect.database_file(db.engine)
    if path is None:
        raise NotSupportedOnBackend(not_a_file)
    return path


def wal_path(path: Path) -> Path:
    return path.with_name(path.name + "-wal")


@dataclass(frozen=True)
class FileSizes:
    database_bytes: int
    wal_bytes: int

    @classmethod
    def of(cls, db: Database) -> FileSizes:
        path = database_file(db, f"{db.safe_url} is not an SQLite database file")
        return cls(file_size(path), file_size(wal_path(path)))


@contextmanager
def raw_sqlite(db: Database) -> Iterator[sqlite3.Connection]:
    """A pooled sqlite3 connection of a file database, outside any transaction (backup and
    restore). Call :func:`database_file` first: it refuses a server database."""
    dialect = db.dialect
    assert isinstance(dialect, SqliteDialect)
    with _raw_sqlite(db.engine, dialect) as conn:
        yield conn
