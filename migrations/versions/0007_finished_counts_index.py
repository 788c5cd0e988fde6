"""Finished tasks per state and type, counted from an index: ``stats`` without a table scan.

Revision 0006 dropped ``ix_task_queue_status_type`` from the write path. ``stats`` (REST
``/stats``, ``prismq-queue stats``, the dashboard's overview) still needs tasks per type and
state; the live states are counted from their partial indexes, and this index holds the rest,
the retained history, as ``(status, type, finished_at_utc)`` over finished rows only (the last
column makes it covering: SQLite reads the partial index's own condition column). A task
enters it once, when it finishes, and leaves it only if an operator retries it or retention
purges it, so a claim or a retry with back-off never touches it. Counting 10^6 finished tasks
reads this index alone instead of every row with its payload.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FINISHED = "finished_at_utc IS NOT NULL"


def upgrade() -> None:
    op.create_index(
        "ix_task_queue_finished_status_type",
        "task_queue",
        ["status", "type", "finished_at_utc"],
        sqlite_where=sa.text(FINISHED),
        postgresql_where=sa.text(FINISHED),
    )


def downgrade() -> None:
    op.drop_index("ix_task_queue_finished_status_type", table_name="task_queue")
