"""A partial index over failed tasks, newest first: the dead-letter list.

``WHERE status = 'failed' ORDER BY id DESC LIMIT n`` (the dashboard's dead letters,
``GET /api/queue/tasks?status=failed``, ``tasks list --status failed``) otherwise walks the
primary key from the newest task until it has found n failed ones: when failures are rare in
a large history, that is the whole table (114 ms of CPU at 10^6 tasks with 60 failed). The
index holds failed rows only, so it costs a write only when a task enters or leaves the
dead-letter state.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FAILED = "status = 'failed'"


def upgrade() -> None:
    op.create_index(
        "ix_task_queue_failed",
        "task_queue",
        ["id"],
        sqlite_where=sa.text(FAILED),
        postgresql_where=sa.text(FAILED),
    )


def downgrade() -> None:
    op.drop_index("ix_task_queue_failed", table_name="task_queue")
