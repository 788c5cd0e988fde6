"""Lean indexes: drop ix_task_queue_status_type (issue 11 D).

Every index on task_queue must serve a claim, recovery or listing plan
(tests/queue_core/test_explain.py proves it on both backends). ``ix_task_queue_status_type``
serves none: each claim walks its strategy's partial index, recovery the leased one, and the
dead-letter list ix_task_queue_failed. It covered every row, so every transition (each one
changes ``status``) paid an index delete and insert for it, and on PostgreSQL it was the index a
claim's plan flipped to, with a sort of the whole backlog, when its statistics went stale
(issue 11 F). ``stats`` counts per type and status with one scan of the table instead.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_task_queue_status_type", table_name="task_queue")


def downgrade() -> None:
    op.create_index("ix_task_queue_status_type", "task_queue", ["status", "type"])
