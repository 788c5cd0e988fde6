"""Initial schema: task_queue, workers, task_logs, and the weighted_random clock.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from queue_core.types import JsonDocument, JsonText, UtcDateTime, utc_now_default

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
QUEUED = "status = 'queued'"


def _time(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(
        name,
        UtcDateTime(),
        nullable=nullable,
        server_default=None if nullable else utc_now_default(),
    )


def _integer_time_checks(table: str, columns: Sequence[str]) -> list[sa.CheckConstraint]:
    # SQLite stores instants as epoch microseconds; text here would compare wrongly.
    return [
        sa.CheckConstraint(
            f"typeof({column}) IN ('integer', 'null')", name=op.f(f"ck_{table}_{column}_integer")
        ).ddl_if(dialect="sqlite")
        for column in columns
    ]


def _partial(where: str) -> dict[str, sa.TextClause]:
    return {"sqlite_where": sa.text(where), "postgresql_where": sa.text(where)}


def upgrade() -> None:
    task_times = (
        "run_after_utc",
        "lease_until_utc",
        "reserved_at_utc",
        "processing_started_utc",
        "finished_at_utc",
        "created_at_utc",
        "updated_at_utc",
    )
    op.create_table(
        "task_queue",
        sa.Column("id", RowId, autoincrement=True, nullable=False),
        sa.Column("type", sa.String(length=200), nullable=False),
        sa.Column("priority", sa.Integer(), server_default="100", nullable=False),
        sa.Column("payload", JsonText, server_default=sa.text("'{}'"), nullable=False),
        sa.Column("compatibility", JsonDocument, server_default=sa.text("'{}'"), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="queued", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("max_attempts", sa.Integer(), server_default="5", nullable=False),
        _time("run_after_utc"),
        _time("lease_until_utc", nullable=True),
        _time("reserved_at_utc", nullable=True),
        _time("processing_started_utc", nullable=True),
        _time("finished_at_utc", nullable=True),
        sa.Column("locked_by", sa.String(length=200), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        _time("created_at_utc"),
        _time("updated_at_utc"),
        sa.Column("result", JsonText, nullable=True),
        sa.Column(
            "cancel_requested", sa.Boolean(), server_default=sa.text("false"), nullable=False
        ),
        sa.Column("timeout_seconds", sa.Float(), nullable=True),
        sa.Column("lease_token", sa.Integer(), server_default="0", nullable=False),
        sa.Column("wr_key", sa.Float(), nullable=True),
        sa.CheckConstraint(
            "status IN ('queued', 'leased', 'completed', 'failed', 'cancelled')",
            name=op.f("ck_task_queue_status"),
        ),
        sa.CheckConstraint("priority BETWEEN 1 AND 1000", name=op.f("ck_task_queue_priority")),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_task_queue_attempts")),
        sa.CheckConstraint("max_attempts >= 1", name=op.f("ck_task_queue_max_attempts")),
        *_integer_time_checks("task_queue", task_times),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_queue")),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_task_queue_due_fifo", "task_queue", ["run_after_utc", "id"], **_partial(QUEUED)
    )
    op.create_index(
        "ix_task_queue_due_priority",
        "task_queue",
        ["priority", "run_after_utc", "id"],
        **_partial(QUEUED),
    )
    op.create_index(
        "ix_task_queue_due_weighted",
        "task_queue",
        ["wr_key"],
        **_partial(f"{QUEUED} AND wr_key IS NOT NULL"),
    )
    op.create_index(
        "ix_task_queue_unkeyed",
        "task_queue",
        ["run_after_utc"],
        **_partial(f"{QUEUED} AND wr_key IS NULL"),
    )
    op.create_index(
        "ix_task_queue_lease_until",
        "task_queue",
        ["lease_until_utc"],
        **_partial("status = 'leased'"),
    )
    op.create_index(
        "uq_task_queue_idempotency_key",
        "task_queue",
        ["idempotency_key"],
        unique=True,
        **_partial("idempotency_key IS NOT NULL"),
    )
    op.create_index("ix_task_queue_status_type", "task_queue", ["status", "type"])
    op.create_index(
        "ix_task_queue_finished",
        "task_queue",
        ["finished_at_utc"],
        **_partial("finished_at_utc IS NOT NULL"),
    )

    op.create_table(
        "workers",
        sa.Column("worker_id", sa.String(length=200), nullable=False),
        sa.Column("capabilities", JsonDocument, server_default=sa.text("'{}'"), nullable=False),
        _time("heartbeat_utc"),
        _time("started_at_utc"),
        _time("stopped_at_utc", nullable=True),
        sa.Column("hostname", sa.String(length=255), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("task_types", JsonDocument, server_default=sa.text("'[]'"), nullable=False),
        sa.Column("concurrency", sa.Integer(), server_default="1", nullable=False),
        sa.Column("strategy", sa.String(length=32), nullable=True),
        *_integer_time_checks("workers", ("heartbeat_utc", "started_at_utc", "stopped_at_utc")),
        sa.PrimaryKeyConstraint("worker_id", name=op.f("pk_workers")),
    )

    op.create_table(
        "task_logs",
        sa.Column("log_id", RowId, autoincrement=True, nullable=False),
        sa.Column("task_id", RowId, nullable=False),
        _time("at_utc"),
        sa.Column("level", sa.String(length=10), server_default="INFO", nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("details", JsonDocument, nullable=True),
        *_integer_time_checks("task_logs", ("at_utc",)),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["task_queue.id"],
            name=op.f("fk_task_logs_task_id_task_queue"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("log_id", name=op.f("pk_task_logs")),
    )
    op.create_index("ix_task_logs_task_id_log_id", "task_logs", ["task_id", "log_id"])
    op.create_index("ix_task_logs_at_utc", "task_logs", ["at_utc"])

    clock = op.create_table(
        "task_queue_clock",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("vtime", sa.Float(), server_default="0", nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_task_queue_clock_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_queue_clock")),
    )
    op.bulk_insert(clock, [{"id": 1, "vtime": 0.0}])


def downgrade() -> None:
    op.drop_table("task_queue_clock")
    op.drop_index("ix_task_logs_at_utc", table_name="task_logs")
    op.drop_index("ix_task_logs_task_id_log_id", table_name="task_logs")
    op.drop_table("task_logs")
    op.drop_table("workers")
    for index in (
        "ix_task_queue_finished",
        "ix_task_queue_status_type",
        "uq_task_queue_idempotency_key",
        "ix_task_queue_lease_until",
        "ix_task_queue_unkeyed",
        "ix_task_queue_due_weighted",
        "ix_task_queue_due_priority",
        "ix_task_queue_due_fifo",
    ):
        op.drop_index(index, table_name="task_queue")
    op.drop_table("task_queue")
