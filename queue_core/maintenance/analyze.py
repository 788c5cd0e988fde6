"""Planner statistics: ANALYZE, and SQLite's cheap ``PRAGMA optimize``.

The claim pins its index with INDEXED BY, so stale statistics cannot slow it; they matter for
the operator's queries, the dashboard views and the purge.
"""

from __future__ import annotations

from queue_core.database import Database


def analyze(db: Database) -> str:
    """Gather statistics for every queue table. Returns a one-line summary."""
    return db.dialect.analyze(db.engine)


def optimize(db: Database) -> str:
    """SQLite's ``PRAGMA optimize`` (analyses only what needs it; usually instant).

    On PostgreSQL, autovacuum already keeps statistics fresh: nothing to do.
    """
    return db.dialect.optimize(db.engine)
