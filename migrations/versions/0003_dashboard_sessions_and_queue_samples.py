"""Dashboard sessions and per-minute queue samples.

``dashboard_sessions`` holds the SHA-256 of each signed-in /ui session id, so that logging out
ends a session on the server. ``queue_samples`` holds the queue's depth once a minute for the
dashboard's depth chart.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from queue_core.types import UtcDateTime, utc_now_default

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _integer_time(table: str, column: str) -> sa.CheckConstraint:
    # SQLite stores instants as epoch microseconds; text here would compare wrongly.
    return sa.CheckConstraint(
        f"typeof({column}) = 'integer'", name=op.f(f"ck_{table}_{column}_integer")
    ).ddl_if(dialect="sqlite")


def upgrade() -> None:
    op.create_table(
        "dashboard_sessions",
        sa.Column("session_hash", sa.String(length=64), nullable=False),
        sa.Column(
            "created_at_utc", UtcDateTime(), nullable=False, server_default=utc_now_default()
        ),
        sa.Column("expires_at_utc", UtcDateTime(), nullable=False),
        _integer_time("dashboard_sessions", "created_at_utc"),
        _integer_time("dashboard_sessions", "expires_at_utc"),
        sa.PrimaryKeyConstraint("session_hash", name=op.f("pk_dashboard_sessions")),
    )
    op.create_table(
        "queue_samples",
        sa.Column("sampled_at_utc", UtcDateTime(), nullable=False, autoincrement=False),
        sa.Column("queued", sa.Integer(), nullable=False),
        sa.Column("due", sa.Integer(), nullable=False),
        sa.Column("leased", sa.Integer(), nullable=False),
        _integer_time("queue_samples", "sampled_at_utc"),
        sa.PrimaryKeyConstraint("sampled_at_utc", name=op.f("pk_queue_samples")),
    )


def downgrade() -> None:
    op.drop_table("queue_samples")
    op.drop_table("dashboard_sessions")
