"""Fixtures of the maintenance tests."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from queue_core.database import Database


@pytest.fixture
def leases_db(db: Database) -> Database:
    """``db`` with no maintenance_leases rows (the shared PostgreSQL reset leaves them)."""
    with db.write() as conn:
        conn.execute(text("DELETE FROM maintenance_leases"))
    return db
