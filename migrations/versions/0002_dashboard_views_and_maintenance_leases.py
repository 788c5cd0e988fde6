"""Dashboard views and the maintenance_leases table.

The views' SQL differs per dialect (INTEGER epoch microseconds on SQLite, timestamptz on
PostgreSQL); it lives in ``queue_core.maintenance.views``, frozen for this revision.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from queue_core.maintenance.views import create_view_statements, drop_view_statements
from queue_core.types import UtcDateTime

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "maintenance_leases",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("lease_until_utc", UtcDateTime(), nullable=False),
        # SQLite stores instants as epoch microseconds; text here would compare wrongly.
        sa.CheckConstraint(
            "typeof(lease_until_utc) = 'integer'",
            name=op.f("ck_maintenance_leases_lease_until_utc_integer"),
        ).ddl_if(dialect="sqlite"),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_maintenance_leases")),
    )
    # get_context() rather than get_bind(): it also answers in offline (--sql) mode.
    for statement in create_view_statements(op.get_context().dialect.name):
        op.execute(statement)


def downgrade() -> None:
    for statement in drop_view_statements():
        op.execute(statement)
    op.drop_table("maintenance_leases")
