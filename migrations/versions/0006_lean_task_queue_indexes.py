"""Lean indexes (issue 11 D): no index over the whole history on the write path.

``ix_task_queue_status_type`` (``status, type``) is replaced by ``ix_task_queue_queued_type``
(``type`` over queued rows only). The old index served no claim or recovery plan, yet it held
every row of the history, and every transition (each one changes ``status``) paid an index
delete and insert for it; on PostgreSQL it was also the index a claim's plan flipped to, with a
sort of the whole backlog, when statistics went stale (issue 11 F). What it did serve, the
live counts per type (the dashboard's overview, ``stats``), the new one serves from the index
alone: a task enters it at enqueue and leaves it at claim, and finishing a task no longer
touches it. Leased counts walk ``ix_task_queue_lease_until``.

tests/queue_core/test_explain.py proves on both backends that every task_queue index is used
by a claim or recovery plan, or is one of the listed uniqueness and listing indexes.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

QUEUED = "status = 'queued'"


def upgrade() -> None:
    op.drop_index("ix_task_queue_status_type", table_name="task_queue")
    op.create_index(
        "ix_task_queue_queued_type",
        "task_queue",
        ["type"],
        sqlite_where=sa.text(QUEUED),
        postgresql_where=sa.text(QUEUED),
    )


def downgrade() -> None:
    op.drop_index("ix_task_queue_queued_type", table_name="task_queue")
    op.create_index("ix_task_queue_status_type", "task_queue", ["status", "type"])
