"""Planner statistics: ANALYZE, and SQLite's cheap ``PRAGMA optimize``.

The claim pins its index with INDEXED BY, so stale statistics cannot slow it; they matter for
the operator's queries, the dashboard views and the purge.
"""

from __future__ import annotations

import sqlite3

from queue_core.database import Database
from queue_core.maintenance._common import autocommit, is_sqlite, quoted_tables, raw_sqlite


def analyze(db: Database) -> str:
    """Gather statistics for every queue table. Returns a one-line summary."""
    if is_sqlite(db):
        with raw_sqlite(db) as conn:
            _in_write_transaction(conn, "ANALYZE", "PRAGMA optimize")
        return "analyze: ANALYZE and PRAGMA optimize done"
    with autocommit(db) as conn:
        conn.exec_driver_sql(f"ANALYZE {quoted_tables()}")
    return "analyze: ANALYZE done"


def optimize(db: Database) -> str:
    """SQLite's ``PRAGMA optimize`` (analyses only what needs it; usually instant).

    On PostgreSQL, autovacuum already keeps statistics fresh: nothing to do.
    """
    if not is_sqlite(db):
        return "optimize: nothing to do on PostgreSQL (autovacuum analyses)"
    with raw_sqlite(db) as conn:
        _in_write_transaction(conn, "PRAGMA optimize")
    return "optimize: PRAGMA optimize done"


def _in_write_transaction(conn: sqlite3.Connection, *statements: str) -> None:
    # ANALYZE reads the tables, then writes sqlite_stat1. Run as a deferred transaction it
    # fails with SQLITE_BUSY at once, whatever busy_timeout says, when another process
    # commits in between (seen with four workers starting together): take the lock first.
    conn.execute("BEGIN IMMEDIATE")
    for statement in statements:
        conn.execute(statement)
    conn.execute("COMMIT")
