"""VACUUM: give the space of deleted rows back (SQLite rewrites the file; PostgreSQL reclaims
dead tuples and refreshes statistics).

SQLite's VACUUM holds the write lock for the whole rewrite, so writers wait (up to their
busy_timeout) while it runs: run it off-peak, after a large purge. It needs free disk space of
about twice the database. In WAL mode the rewritten pages first land in the WAL, so a TRUNCATE
checkpoint follows to bring the WAL back to zero bytes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from queue_core.database import Database


@dataclass(frozen=True)
class VacuumReport:
    bytes_before: int
    """SQLite: database file plus WAL; PostgreSQL: the queue tables with indexes and TOAST."""
    bytes_after: int
    seconds: float

    def summary(self) -> str:
        return (
            f"vacuum: {self.bytes_before} -> {self.bytes_after} bytes "
            f"({self.bytes_before - self.bytes_after} reclaimed) in {self.seconds:.1f}s"
        )


def vacuum(db: Database) -> VacuumReport:
    started = time.monotonic()
    before = db.dialect.storage_bytes(db.engine)
    db.dialect.vacuum(db.engine)
    return VacuumReport(before, db.dialect.storage_bytes(db.engine), time.monotonic() - started)


def queue_tables_bytes(db: Database) -> int:
    """The queue's size on disk (PostgreSQL: its tables with their indexes and TOAST)."""
    return db.dialect.storage_bytes(db.engine)
