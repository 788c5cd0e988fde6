"""Flow control: schedules, per-type pause and limits, dependencies (CONTRACT §9).

Adds the ``schedules``, ``task_types``, ``task_type_claims`` and ``task_dependencies``
tables, and three columns to ``task_queue``: ``pending_deps`` (dependencies not completed yet),
``has_dependents`` and ``schedule``. Existing rows get ``pending_deps = 0``: nothing changes
for them.

Self-contained: the column types are frozen here (a UTC instant is epoch microseconds in a
BIGINT on SQLite, ``timestamptz`` on PostgreSQL; JSON documents are TEXT on SQLite and
``json`` on PostgreSQL), so later changes to ``queue_core.types`` cannot change this revision.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Instant = sa.BigInteger().with_variant(postgresql.TIMESTAMP(timezone=True), "postgresql")
JsonText = sa.Text().with_variant(postgresql.JSON(), "postgresql")
NAME_LENGTH = 200
TYPE_LENGTH = 200


class _utc_now(FunctionElement[object]):
    """The database's "now" in the storage of a UTC instant (frozen copy of
    ``queue_core.types.utc_now_default``)."""

    inherit_cache = True


@compiles(_utc_now, "postgresql")
def _now_postgresql(element: _utc_now, compiler: Any, **kw: Any) -> str:
    return "now()"


@compiles(_utc_now, "sqlite")
def _now_sqlite(element: _utc_now, compiler: Any, **kw: Any) -> str:
    return "(CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER))"


def _now() -> _utc_now:
    return _utc_now()


def _time(name: str, nullable: bool = False, default: bool = True) -> sa.Column[object]:
    return sa.Column(
        name,
        Instant,
        nullable=nullable,
        server_default=_now() if default and not nullable else None,
    )


def _integer_time_checks(table: str, columns: Sequence[str]) -> list[sa.CheckConstraint]:
    # SQLite stores instants as epoch microseconds; text here would compare wrongly.
    return [
        sa.CheckConstraint(
            f"typeof({column}) IN ('integer', 'null')", name=op.f(f"ck_{table}_{column}_integer")
        ).ddl_if(dialect="sqlite")
        for column in columns
    ]


QUEUED = "status = 'queued'"
CLAIMABLE = "status = 'queued' AND pending_deps = 0"
# The claim indexes: (name, columns, extra predicate). 0005 narrows them to claimable rows.
CLAIM_INDEXES = (
    ("ix_task_queue_due_fifo", ["run_after_utc", "id"], ""),
    ("ix_task_queue_due_priority", ["priority", "run_after_utc", "id"], ""),
    ("ix_task_queue_due_weighted", ["wr_key"], " AND wr_key IS NOT NULL"),
)


def _partial(where: str) -> dict[str, sa.TextClause]:
    return {"sqlite_where": sa.text(where), "postgresql_where": sa.text(where)}


def _rebuild_claim_indexes(predicate: str) -> None:
    for name, columns, extra in CLAIM_INDEXES:
        op.drop_index(name, table_name="task_queue")
        op.create_index(name, "task_queue", columns, **_partial(predicate + extra))


def upgrade() -> None:
    with op.batch_alter_table("task_queue", recreate="never") as batch:
        batch.add_column(
            sa.Column("pending_deps", sa.Integer(), server_default="0", nullable=False)
        )
        batch.add_column(
            sa.Column("has_dependents", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch.add_column(sa.Column("schedule", sa.String(length=NAME_LENGTH), nullable=True))
    # A task waiting for its dependencies is queued but not claimable: the claim indexes
    # leave it out, so no claim ever walks over waiting tasks.
    _rebuild_claim_indexes(CLAIMABLE)

    op.create_table(
        "task_dependencies",
        sa.Column("task_id", RowId, nullable=False),
        sa.Column("depends_on_id", RowId, nullable=False),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["task_queue.id"],
            name=op.f("fk_task_dependencies_task_id_task_queue"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["depends_on_id"],
            ["task_queue.id"],
            name=op.f("fk_task_dependencies_depends_on_id_task_queue"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("task_id", "depends_on_id", name=op.f("pk_task_dependencies")),
    )
    op.create_index(
        op.f("ix_task_dependencies_depends_on_id"), "task_dependencies", ["depends_on_id"]
    )

    schedule_times = ("next_due_utc", "last_due_utc", "created_at_utc", "updated_at_utc")
    op.create_table(
        "schedules",
        sa.Column("name", sa.String(length=NAME_LENGTH), nullable=False),
        sa.Column("type", sa.String(length=TYPE_LENGTH), nullable=False),
        sa.Column("cron", sa.String(length=200), nullable=False),
        sa.Column("timezone", sa.String(length=100), server_default="UTC", nullable=False),
        sa.Column("payload", JsonText, server_default=sa.text("'{}'"), nullable=False),
        sa.Column("priority", sa.Integer(), server_default="100", nullable=False),
        sa.Column("catch_up", sa.String(length=16), server_default="latest", nullable=False),
        sa.Column("paused", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("source", sa.String(length=16), server_default="api", nullable=False),
        _time("next_due_utc", default=False),
        _time("last_due_utc", nullable=True),
        sa.Column("last_task_id", RowId, nullable=True),
        _time("created_at_utc"),
        _time("updated_at_utc"),
        sa.CheckConstraint(
            "catch_up IN ('latest', 'none', 'all')", name=op.f("ck_schedules_catch_up")
        ),
        sa.CheckConstraint("priority BETWEEN 1 AND 1000", name=op.f("ck_schedules_priority")),
        *_integer_time_checks("schedules", schedule_times),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_schedules")),
    )

    op.create_table(
        "task_types",
        sa.Column("type", sa.String(length=TYPE_LENGTH), nullable=False),
        sa.Column("paused", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("max_running", sa.Integer(), nullable=True),
        sa.Column("rate_count", sa.Integer(), nullable=True),
        sa.Column("rate_per_seconds", sa.Float(), nullable=True),
        _time("updated_at_utc"),
        sa.CheckConstraint(
            "max_running IS NULL OR max_running >= 1", name=op.f("ck_task_types_max_running")
        ),
        sa.CheckConstraint(
            "(rate_count IS NULL AND rate_per_seconds IS NULL)"
            " OR (rate_count >= 1 AND rate_per_seconds > 0)",
            name=op.f("ck_task_types_rate"),
        ),
        *_integer_time_checks("task_types", ("updated_at_utc",)),
        sa.PrimaryKeyConstraint("type", name=op.f("pk_task_types")),
    )

    op.create_table(
        "task_type_claims",
        sa.Column("id", RowId, autoincrement=True, nullable=False),
        sa.Column("type", sa.String(length=TYPE_LENGTH), nullable=False),
        _time("claimed_at_utc", default=False),
        *_integer_time_checks("task_type_claims", ("claimed_at_utc",)),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_type_claims")),
    )
    op.create_index(
        op.f("ix_task_type_claims_type_claimed_at_utc"),
        "task_type_claims",
        ["type", "claimed_at_utc"],
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_task_type_claims_type_claimed_at_utc"), table_name="task_type_claims")
    op.drop_table("task_type_claims")
    op.drop_table("task_types")
    op.drop_table("schedules")
    op.drop_index(op.f("ix_task_dependencies_depends_on_id"), table_name="task_dependencies")
    op.drop_table("task_dependencies")
    _rebuild_claim_indexes(QUEUED)
    with op.batch_alter_table("task_queue", recreate="never") as batch:
        batch.drop_column("schedule")
        batch.drop_column("has_dependents")
        batch.drop_column("pending_deps")
