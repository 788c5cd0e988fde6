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

from sqlalchemy import text

from queue_core.database import Database
from queue_core.maintenance._common import (
    QUEUE_TABLES,
    FileSizes,
    autocommit,
    is_sqlite,
    quoted_tables,
    raw_sqlite,
)
from queue_core.maintenance.checkpoint import CheckpointMode, checkpoint


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
    if is_sqlite(db):
        before = FileSizes.of(db)
        with raw_sqlite(db) as conn:
            conn.execute("VACUUM")
        checkpoint(db, CheckpointMode.TRUNCATE)
        after = FileSizes.of(db)
        return VacuumReport(
            before.database_bytes + before.wal_bytes,
            after.database_bytes + after.wal_bytes,
            time.monotonic() - started,
        )
    before_bytes = queue_tables_bytes(db)
    with autocommit(db) as conn:
        conn.exec_driver_sql(f"VACUUM (ANALYZE) {quoted_tables()}")
    return VacuumReport(before_bytes, queue_tables_bytes(db), time.monotonic() - started)


def queue_tables_bytes(db: Database) -> int:
    """PostgreSQL: the on-disk size of the queue's tables, their indexes and TOAST."""
    sizes = " + ".join(f"pg_total_relation_size('{table}')" for table in QUEUE_TABLES)
    with db.read() as conn:
        return int(conn.execute(text(f"SELECT {sizes}")).scalar_one())
