"""ORM models: one class per table. Table and column names are pinned by CONTRACT §3.

The hot paths (enqueue, claim, outcomes) run each dialect's own SQL over these tables
(``queue_core/dialects/*_sql.py``); the classes document the schema, drive Alembic's
autogenerate check, and give the cold paths their Core tables. Code outside ``queue_core``
goes through the repositories (``TaskRepository.snapshots``, ...), never ``__table__``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from queue_core.settings import (
    IDEMPOTENCY_KEY_MAX_LENGTH,
    MAX_ATTEMPTS_DEFAULT,
    PRIORITY_DEFAULT,
    PRIORITY_MAX,
    PRIORITY_MIN,
    SCHEDULE_NAME_MAX_LENGTH,
    TYPE_MAX_LENGTH,
)
from queue_core.states import ALL_STATES, TaskStatus
from queue_core.types import JsonDocument, JsonText, UtcDateTime, utc_now_default

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# A row id: INTEGER on SQLite so that it aliases the rowid, BIGINT elsewhere.
RowId = BigInteger().with_variant(Integer(), "sqlite")


QUEUED = TaskStatus.QUEUED.value
LEASED = TaskStatus.LEASED.value
FAILED = TaskStatus.FAILED.value
# The claim indexes hold these rows only: queued, with every dependency completed.
CLAIMABLE = f"status = '{QUEUED}' AND pending_deps = 0"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _now_column(nullable: bool = False) -> Mapped[Any]:
    return mapped_column(
        UtcDateTime(),
        nullable=nullable,
        server_default=None if nullable else utc_now_default(),
    )


class TaskRow(Base):
    __tablename__ = "task_queue"

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    type: Mapped[str] = mapped_column(String(TYPE_MAX_LENGTH), nullable=False)
    priority: Mapped[int] = mapped_column(
        Integer, nullable=False, server_default=str(PRIORITY_DEFAULT)
    )
    payload: Mapped[dict[str, Any]] = mapped_column(
        JsonText, nullable=False, server_default=text("'{}'")
    )
    compatibility: Mapped[dict[str, Any]] = mapped_column(
        JsonDocument, nullable=False, server_default=text("'{}'")
    )
    status: Mapped[str] = mapped_column(String(16), nullable=False, server_default=QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    max_attempts: Mapped[int] = mapped_column(
        Integer, nullable=False, server_default=str(MAX_ATTEMPTS_DEFAULT)
    )
    run_after_utc: Mapped[datetime] = _now_column()
    lease_until_utc: Mapped[datetime | None] = _now_column(nullable=True)
    reserved_at_utc: Mapped[datetime | None] = _now_column(nullable=True)
    processing_started_utc: Mapped[datetime | None] = _now_column(nullable=True)
    finished_at_utc: Mapped[datetime | None] = _now_column(nullable=True)
    locked_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    idempotency_key: Mapped[str | None] = mapped_column(
        String(IDEMPOTENCY_KEY_MAX_LENGTH), nullable=True
    )
    created_at_utc: Mapped[datetime] = _now_column()
    updated_at_utc: Mapped[datetime] = _now_column()
    # Beyond the contract's columns: the handler's return value, the cancel flag a running
    # handler polls, an optional time limit, the lease token that guards every transition
    # (bumped at each claim, never reused) and the weighted_random race key.
    result: Mapped[Any | None] = mapped_column(JsonText, nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(
        Boolean, nullable=False, server_default=text("false")
    )
    timeout_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    lease_token: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    wr_key: Mapped[float | None] = mapped_column(Float, nullable=True)
    # Flow control (docs/scheduling.md): how many of the task's dependencies are not completed
    # yet (the claim asks only ``pending_deps = 0``: no walk of the dependency graph), whether
    # some task depends on this one (its end then updates them), and the schedule that
    # enqueued it.
    pending_deps: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    has_dependents: Mapped[bool] = mapped_column(
        Boolean, nullable=False, server_default=text("false")
    )
    schedule: Mapped[str | None] = mapped_column(String(SCHEDULE_NAME_MAX_LENGTH), nullable=True)

    __table_args__ = (
        CheckConstraint(
            "status IN (" + ", ".join(f"'{s}'" for s in ALL_STATES) + ")", name="status"
        ),
        CheckConstraint(f"priority BETWEEN {PRIORITY_MIN} AND {PRIORITY_MAX}", name="priority"),
        CheckConstraint("attempts >= 0", name="attempts"),
        CheckConstraint("max_attempts >= 1", name="max_attempts"),
        # One partial index per claim order, over queued rows only: the claim walks it in
        # order and stops after LIMIT rows, whatever the size of the finished history.
        # Tasks waiting for dependencies (pending_deps > 0) are left out too: a claim never
        # walks over them, however many wait.
        Index(
            "ix_task_queue_due_fifo",
            "run_after_utc",
            "id",
            sqlite_where=text(CLAIMABLE),
            postgresql_where=text(CLAIMABLE),
        ),
        Index(
            "ix_task_queue_due_priority",
            "priority",
            "run_after_utc",
            "id",
            sqlite_where=text(CLAIMABLE),
            postgresql_where=text(CLAIMABLE),
        ),
        Index(
            "ix_task_queue_due_weighted",
            "wr_key",
            sqlite_where=text(f"{CLAIMABLE} AND wr_key IS NOT NULL"),
            postgresql_where=text(f"{CLAIMABLE} AND wr_key IS NOT NULL"),
        ),
        # Delayed and backed-off tasks wait here until weighted_random gives them a key.
        Index(
            "ix_task_queue_unkeyed",
            "run_after_utc",
            sqlite_where=text(f"status = '{QUEUED}' AND wr_key IS NULL"),
            postgresql_where=text(f"status = '{QUEUED}' AND wr_key IS NULL"),
        ),
        # The queued tasks per type, read from the index alone (the dashboard's live
        # counts); entered at enqueue, left at claim (revision 0006).
        Index(
            "ix_task_queue_queued_type",
            "type",
            sqlite_where=text(f"status = '{QUEUED}'"),
            postgresql_where=text(f"status = '{QUEUED}'"),
        ),
        # Recovery looks only at leased rows, in expiry order.
        Index(
            "ix_task_queue_lease_until",
            "lease_until_utc",
            sqlite_where=text(f"status = '{LEASED}'"),
            postgresql_where=text(f"status = '{LEASED}'"),
        ),
        Index(
            "uq_task_queue_idempotency_key",
            "idempotency_key",
            unique=True,
            sqlite_where=text("idempotency_key IS NOT NULL"),
            postgresql_where=text("idempotency_key IS NOT NULL"),
        ),
        # The dead-letter list, newest first, however rare failures are in a long history.
        Index(
            "ix_task_queue_failed",
            "id",
            sqlite_where=text(f"status = '{FAILED}'"),
            postgresql_where=text(f"status = '{FAILED}'"),
        ),
        Index(
            "ix_task_queue_finished",
            "finished_at_utc",
            sqlite_where=text("finished_at_utc IS NOT NULL"),
            postgresql_where=text("finished_at_utc IS NOT NULL"),
        ),
        # Finished tasks per state and type, counted from the index alone (stats).
        Index(
            "ix_task_queue_finished_status_type",
            "status",
            "type",
            "finished_at_utc",
            sqlite_where=text("finished_at_utc IS NOT NULL"),
            postgresql_where=text("finished_at_utc IS NOT NULL"),
        ),
        {"sqlite_autoincrement": True},
    )


class WorkerRow(Base):
    __tablename__ = "workers"

    worker_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    capabilities: Mapped[dict[str, Any]] = mapped_column(
        JsonDocument, nullable=False, server_default=text("'{}'")
    )
    heartbeat_utc: Mapped[datetime] = _now_column()
    started_at_utc: Mapped[datetime] = _now_column()
    stopped_at_utc: Mapped[datetime | None] = _now_column(nullable=True)
    hostname: Mapped[str | None] = mapped_column(String(255), nullable=True)
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    task_types: Mapped[list[str]] = mapped_column(
        JsonDocument, nullable=False, server_default=text("'[]'")
    )
    concurrency: Mapped[int] = mapped_column(Integer, nullable=False, server_default="1")
    strategy: Mapped[str | None] = mapped_column(String(32), nullable=True)


class TaskLogRow(Base):
    __tablename__ = "task_logs"

    log_id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    task_id: Mapped[int] = mapped_column(
        RowId, ForeignKey("task_queue.id", ondelete="CASCADE"), nullable=False
    )
    at_utc: Mapped[datetime] = _now_column()
    level: Mapped[str] = mapped_column(String(10), nullable=False, server_default="INFO")
    message: Mapped[str] = mapped_column(Text, nullable=False)
    details: Mapped[dict[str, Any] | None] = mapped_column(JsonDocument, nullable=True)

    __table_args__ = (
        Index("ix_task_logs_task_id_log_id", "task_id", "log_id"),
        Index("ix_task_logs_at_utc", "at_utc"),
    )


class QueueClockRow(Base):
    """The weighted_random virtual clock: the race key of the last claimed task."""

    __tablename__ = "task_queue_clock"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    vtime: Mapped[float] = mapped_column(Float, nullable=False, server_default="0")

    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)


TIME_COLUMNS = {
    "task_queue": (
        "run_after_utc",
        "lease_until_utc",
        "reserved_at_utc",
        "processing_started_utc",
        "finished_at_utc",
        "created_at_utc",
        "updated_at_utc",
    ),
    "workers": ("heartbeat_utc", "started_at_utc", "stopped_at_utc"),
    "task_logs": ("at_utc",),
    "schedules": ("next_due_utc", "last_due_utc", "created_at_utc", "updated_at_utc"),
    "task_types": ("updated_at_utc",),
    "task_type_claims": ("claimed_at_utc",),
}


class MaintenanceLeaseRow(Base):
    """Which process runs a scheduled maintenance job, and until when nobody else may.

    The scheduler (``queue_core.maintenance.scheduler``) takes a row only when it is free or
    expired, with one atomic upsert, so exactly one process runs each job per interval.
    """

    __tablename__ = "maintenance_leases"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200), nullable=False)
    lease_until_utc: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)


class DashboardSessionRow(Base):
    """A signed-in dashboard session (/ui). The cookie holds the session id; the table holds
    only its SHA-256, so that logging out (deleting the row) refuses the old cookie at once,
    whichever server process it reaches, and a copy of the table opens no session."""

    __tablename__ = "dashboard_sessions"

    session_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at_utc: Mapped[datetime] = _now_column()
    expires_at_utc: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)


class QueueSampleRow(Base):
    """The queue's depth once a minute, for the dashboard's depth chart: the current rows
    cannot tell how deep the queue was an hour ago. Written by the maintenance job
    ``sample`` (one process per minute), kept for a day."""

    __tablename__ = "queue_samples"

    sampled_at_utc: Mapped[datetime] = mapped_column(
        UtcDateTime(), primary_key=True, autoincrement=False
    )
    queued: Mapped[int] = mapped_column(Integer, nullable=False)
    due: Mapped[int] = mapped_column(Integer, nullable=False)
    leased: Mapped[int] = mapped_column(Integer, nullable=False)


class TaskDependencyRow(Base):
    """One edge of the dependency graph: ``task_id`` waits for ``depends_on_id``.

    Only the ends of tasks read it (to update or cancel their dependents), never the claim.
    A task can only depend on tasks that exist when it is enqueued, so no cycle can form.
    """

    __tablename__ = "task_dependencies"

    task_id: Mapped[int] = mapped_column(
        RowId, ForeignKey("task_queue.id", ondelete="CASCADE"), primary_key=True
    )
    depends_on_id: Mapped[int] = mapped_column(
        RowId, ForeignKey("task_queue.id", ondelete="CASCADE"), primary_key=True
    )

    __table_args__ = (Index("ix_task_dependencies_depends_on_id", "depends_on_id"),)


class ScheduleRow(Base):
    """A periodic task (CONTRACT §9): enqueue one task of ``type`` at each time ``cron`` names.

    ``next_due_utc`` is the next due time not handled yet; the scheduler moves it forward with
    a compare-and-set after enqueueing the due time's task under the idempotency key
    ``schedule:<name>:<due time>``, so two runners can neither duplicate nor skip one.
    """

    __tablename__ = "schedules"

    name: Mapped[str] = mapped_column(String(SCHEDULE_NAME_MAX_LENGTH), primary_key=True)
    type: Mapped[str] = mapped_column(String(TYPE_MAX_LENGTH), nullable=False)
    cron: Mapped[str] = mapped_column(String(200), nullable=False)
    timezone: Mapped[str] = mapped_column(String(100), nullable=False, server_default="UTC")
    payload: Mapped[dict[str, Any]] = mapped_column(
        JsonText, nullable=False, server_default=text("'{}'")
    )
    priority: Mapped[int] = mapped_column(
        Integer, nullable=False, server_default=str(PRIORITY_DEFAULT)
    )
    catch_up: Mapped[str] = mapped_column(String(16), nullable=False, server_default="latest")
    paused: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    source: Mapped[str] = mapped_column(String(16), nullable=False, server_default="api")
    next_due_utc: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    last_due_utc: Mapped[datetime | None] = _now_column(nullable=True)
    last_task_id: Mapped[int | None] = mapped_column(RowId, nullable=True)
    created_at_utc: Mapped[datetime] = _now_column()
    updated_at_utc: Mapped[datetime] = _now_column()

    __table_args__ = (
        CheckConstraint("catch_up IN ('latest', 'none', 'all')", name="catch_up"),
        CheckConstraint(f"priority BETWEEN {PRIORITY_MIN} AND {PRIORITY_MAX}", name="priority"),
    )


class TaskTypeRow(Base):
    """Flow control of one task type (CONTRACT §9): paused, ``max_running``, ``rate``.

    A row exists only while the type is paused or limited: the claim of every other type
    skips this table with one probe of an empty (or tiny) set, so limits cost nothing when
    none is set.
    """

    __tablename__ = "task_types"

    type: Mapped[str] = mapped_column(String(TYPE_MAX_LENGTH), primary_key=True)
    paused: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    max_running: Mapped[int | None] = mapped_column(Integer, nullable=True)
    rate_count: Mapped[int | None] = mapped_column(Integer, nullable=True)
    rate_per_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    updated_at_utc: Mapped[datetime] = _now_column()

    __table_args__ = (
        CheckConstraint("max_running IS NULL OR max_running >= 1", name="max_running"),
        CheckConstraint(
            "(rate_count IS NULL AND rate_per_seconds IS NULL)"
            " OR (rate_count >= 1 AND rate_per_seconds > 0)",
            name="rate",
        ),
    )


class TaskTypeClaimRow(Base):
    """When each task of a rate-limited type was claimed, within the type's window.

    The claim of a rate-limited type counts these rows newer than ``now - per_seconds`` under
    the type's lock and adds one per task it claims, so no window ever holds more than
    ``count`` claims; rows older than the window are deleted by the same claim.
    """

    __tablename__ = "task_type_claims"

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    type: Mapped[str] = mapped_column(String(TYPE_MAX_LENGTH), nullable=False)
    claimed_at_utc: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)

    __table_args__ = (Index("ix_task_type_claims_type_claimed_at_utc", "type", "claimed_at_utc"),)
