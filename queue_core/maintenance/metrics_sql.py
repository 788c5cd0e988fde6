"""The dashboard views (migration 0002) read into typed rows, for Python code that wants the
numbers a Grafana SQL panel shows (docs/monitoring.md, "From Python").

Nothing in the server reads these: ``/stats``, ``/metrics`` and the CLI's ``stats`` use
``TaskRepository.stats()``, and ``tests/queue_core/maintenance/test_views.py`` checks that
the views agree with it. Ages are computed by the database's clock inside the views.
:func:`read_snapshot` reads everything in one short read transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Connection, text

from queue_core.database import Database
from queue_core.maintenance.views import (
    V_QUEUE_DEPTH,
    V_QUEUE_OLDEST_DUE,
    V_RECENT_FAILURES,
    V_TASK_OUTCOME_RATES,
    V_WORKER_ACTIVITY,
)

RECENT_FAILURES_LIMIT_DEFAULT = 20


@dataclass(frozen=True)
class DepthRow:
    type: str
    status: str
    task_count: int
    due_count: int


@dataclass(frozen=True)
class OldestDue:
    due_tasks: int
    delayed_tasks: int
    oldest_due_age_seconds: float | None


@dataclass(frozen=True)
class OutcomeRates:
    window_name: str
    window_seconds: int
    completed: int
    failed: int
    cancelled: int
    retried: int
    success_rate: float | None
    failure_rate: float | None
    finished_per_minute: float


@dataclass(frozen=True)
class WorkerActivity:
    worker_id: str
    status: str
    hostname: str | None
    pid: int | None
    concurrency: int
    leased_tasks: int
    heartbeat_age_seconds: float


@dataclass(frozen=True)
class RecentFailure:
    task_id: int
    type: str
    attempts: int
    max_attempts: int
    error_message: str | None
    last_worker_id: str | None
    failed_age_seconds: float


@dataclass(frozen=True)
class Snapshot:
    depth: list[DepthRow] = field(default_factory=list)
    oldest_due: OldestDue = OldestDue(0, 0, None)
    outcome_rates: list[OutcomeRates] = field(default_factory=list)
    workers: list[WorkerActivity] = field(default_factory=list)
    recent_failures: list[RecentFailure] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(row.task_count for row in self.depth if row.status == status)

    @property
    def workers_active(self) -> int:
        return sum(1 for worker in self.workers if worker.status == "active")


def _float(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


def queue_depth(conn: Connection) -> list[DepthRow]:
    rows = conn.execute(
        text(
            f"SELECT type, status, task_count, due_count FROM {V_QUEUE_DEPTH} ORDER BY type, status"
        )
    )
    return [DepthRow(r.type, r.status, int(r.task_count), int(r.due_count or 0)) for r in rows]


def oldest_due(conn: Connection) -> OldestDue:
    row = conn.execute(
        text(f"SELECT due_tasks, delayed_tasks, oldest_due_age_seconds FROM {V_QUEUE_OLDEST_DUE}")
    ).one()
    return OldestDue(int(row.due_tasks), int(row.delayed_tasks), _float(row.oldest_due_age_seconds))


def outcome_rates(conn: Connection) -> list[OutcomeRates]:
    rows = conn.execute(
        text(
            "SELECT window_name, window_seconds, completed, failed, cancelled, retried, "
            "success_rate, failure_rate, finished_per_minute "
            f"FROM {V_TASK_OUTCOME_RATES} ORDER BY window_seconds"
        )
    )
    return [
        OutcomeRates(
            str(r.window_name),
            int(r.window_seconds),
            int(r.completed),
            int(r.failed),
            int(r.cancelled),
            int(r.retried),
            _float(r.success_rate),
            _float(r.failure_rate),
            float(r.finished_per_minute),
        )
        for r in rows
    ]


def worker_activity(conn: Connection) -> list[WorkerActivity]:
    rows = conn.execute(
        text(
            "SELECT worker_id, status, hostname, pid, concurrency, leased_tasks, "
            f"heartbeat_age_seconds FROM {V_WORKER_ACTIVITY} ORDER BY worker_id"
        )
    )
    return [
        WorkerActivity(
            r.worker_id,
            r.status,
            r.hostname,
            r.pid,
            int(r.concurrency),
            int(r.leased_tasks),
            float(r.heartbeat_age_seconds),
        )
        for r in rows
    ]


def recent_failures(
    conn: Connection, limit: int = RECENT_FAILURES_LIMIT_DEFAULT
) -> list[RecentFailure]:
    rows = conn.execute(
        text(
            "SELECT task_id, type, attempts, max_attempts, error_message, last_worker_id, "
            f"failed_age_seconds FROM {V_RECENT_FAILURES} "
            "ORDER BY failed_age_seconds, task_id DESC LIMIT :limit"
        ),
        {"limit": limit},
    )
    return [
        RecentFailure(
            int(r.task_id),
            r.type,
            int(r.attempts),
            int(r.max_attempts),
            r.error_message,
            r.last_worker_id,
            float(r.failed_age_seconds),
        )
        for r in rows
    ]


def read_snapshot(db: Database, failures_limit: int = RECENT_FAILURES_LIMIT_DEFAULT) -> Snapshot:
    """Every view at once, from one consistent read."""
    with db.read() as conn:
        return Snapshot(
            depth=queue_depth(conn),
            oldest_due=oldest_due(conn),
            outcome_rates=outcome_rates(conn),
            workers=worker_activity(conn),
            recent_failures=recent_failures(conn, failures_limit),
        )
