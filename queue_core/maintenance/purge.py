"""Retention: delete old finished tasks (their logs go with them) and old task_logs rows.

Only ``completed`` and ``cancelled`` tasks are deleted, and ``failed`` ones (the dead letter)
only when asked. ``queued`` and ``leased`` tasks are never touched: every DELETE re-checks the
status and the age in its own WHERE clause, so a task that changed state since it was picked
(an operator re-queued a cancelled task) stays.

The work goes in batches of ``batch_size`` rows, each its own short write transaction, so the
SQLite write lock is never held for long and workers keep claiming in between. The cut-off
times are fixed when the purge starts, so it ends even while new tasks keep finishing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import BindParameter, Connection, bindparam, delete, func, select

from queue_core.clock import Clock, utcnow
from queue_core.database import Database
from queue_core.maintenance._common import Progress
from queue_core.repositories._common import LOGS, TASKS
from queue_core.settings import PURGE_BATCH_SIZE
from queue_core.states import TaskStatus
from queue_core.types import UtcDateTime

PURGED_BY_DEFAULT = (TaskStatus.COMPLETED, TaskStatus.CANCELLED)


def purged_statuses(include_failed: bool) -> list[str]:
    statuses = [*PURGED_BY_DEFAULT, TaskStatus.FAILED] if include_failed else PURGED_BY_DEFAULT
    return [status.value for status in statuses]


@dataclass
class PurgeReport:
    task_cutoff_utc: datetime
    log_cutoff_utc: datetime | None
    tasks_deleted: int = 0
    task_logs_deleted: int = 0
    """Log rows of the deleted tasks (removed by the foreign key's ON DELETE CASCADE)."""
    old_logs_deleted: int = 0
    """Log rows older than the log cut-off, whatever their task's state."""
    batches: int = 0
    finished: bool = True
    """False when ``max_batches`` stopped the purge with work left."""

    def summary(self) -> str:
        state = "" if self.finished else " (stopped at the batch limit; more to purge)"
        return (
            f"purge: {self.tasks_deleted} task(s) finished before "
            f"{self.task_cutoff_utc.isoformat()} deleted with {self.task_logs_deleted} log "
            f"row(s); {self.old_logs_deleted} older log row(s) deleted; "
            f"{self.batches} batch(es){state}"
        )


@dataclass(frozen=True)
class PurgeCounts:
    tasks: int
    old_logs: int

    @property
    def total(self) -> int:
        return self.tasks + self.old_logs


class _Statements:
    def __init__(self, statuses: Sequence[str]) -> None:
        cutoff = bindparam("cutoff", type_=UtcDateTime())
        purgeable = (
            TASKS.c.finished_at_utc.is_not(None),
            TASKS.c.finished_at_utc < cutoff,
            TASKS.c.status.in_(statuses),
        )
        self.count_tasks = select(func.count()).select_from(TASKS).where(*purgeable)
        # FOR UPDATE SKIP LOCKED on PostgreSQL: the rows picked cannot change state before the
        # DELETE, and rows another transaction is changing right now are left for next time.
        # SQLite renders no locking clause; its BEGIN IMMEDIATE already excludes other writers.
        self.pick_tasks = (
            select(TASKS.c.id)
            .where(*purgeable)
            .order_by(TASKS.c.finished_at_utc)
            .limit(bindparam("batch"))
            .with_for_update(skip_locked=True)
        )
        ids: BindParameter[Any] = bindparam("ids", expanding=True)
        self.count_task_logs = select(func.count()).select_from(LOGS).where(LOGS.c.task_id.in_(ids))
        self.delete_tasks = delete(TASKS).where(TASKS.c.id.in_(ids), *purgeable)
        log_cutoff = bindparam("log_cutoff", type_=UtcDateTime())
        self.count_logs = select(func.count()).select_from(LOGS).where(LOGS.c.at_utc < log_cutoff)
        self.pick_logs = (
            select(LOGS.c.log_id)
            .where(LOGS.c.at_utc < log_cutoff)
            .order_by(LOGS.c.at_utc)
            .limit(bindparam("batch"))
        )
        self.delete_logs = delete(LOGS).where(LOGS.c.log_id.in_(ids))


def _cutoffs(
    now: datetime, older_than_days: float, logs_older_than_days: float | None
) -> tuple[datetime, datetime | None]:
    if older_than_days < 0 or (logs_older_than_days is not None and logs_older_than_days < 0):
        raise ValueError("retention periods cannot be negative")
    task_cutoff = now - timedelta(days=older_than_days)
    log_cutoff = (
        None if logs_older_than_days is None else now - timedelta(days=logs_older_than_days)
    )
    return task_cutoff, log_cutoff


def count_purgeable(
    db: Database,
    older_than_days: float,
    *,
    logs_older_than_days: float | None = None,
    include_failed: bool = False,
    clock: Clock = utcnow,
) -> PurgeCounts:
    """What :func:`purge` with the same arguments would delete now (for --dry-run and the
    progress bar). The old-logs count includes logs of purgeable tasks older than the cut-off."""
    task_cutoff, log_cutoff = _cutoffs(clock(), older_than_days, logs_older_than_days)
    sql = _Statements(purged_statuses(include_failed))
    with db.read() as conn:
        tasks = conn.execute(sql.count_tasks, {"cutoff": task_cutoff}).scalar_one()
        logs = 0
        if log_cutoff is not None:
            logs = conn.execute(sql.count_logs, {"log_cutoff": log_cutoff}).scalar_one()
    return PurgeCounts(int(tasks), int(logs))


def purge(
    db: Database,
    older_than_days: float,
    *,
    logs_older_than_days: float | None = None,
    include_failed: bool = False,
    batch_size: int = PURGE_BATCH_SIZE,
    max_batches: int | None = None,
    progress: Progress | None = None,
    clock: Clock = utcnow,
) -> PurgeReport:
    """Delete tasks finished more than ``older_than_days`` ago, then log rows older than
    ``logs_older_than_days`` (when given). ``progress`` gets the rows deleted per batch."""
    task_cutoff, log_cutoff = _cutoffs(clock(), older_than_days, logs_older_than_days)
    sql = _Statements(purged_statuses(include_failed))
    report = PurgeReport(task_cutoff, log_cutoff)
    batch_size = max(1, batch_size)

    def budget_left() -> bool:
        if max_batches is not None and report.batches >= max_batches:
            report.finished = False
            return False
        return True

    while budget_left():
        with db.write() as conn:
            picked, deleted, logs = _delete_task_batch(conn, sql, task_cutoff, batch_size)
        if picked == 0:
            break
        report.batches += 1
        report.tasks_deleted += deleted
        report.task_logs_deleted += logs
        if progress is not None:
            progress(deleted)
    while log_cutoff is not None and budget_left():
        with db.write() as conn:
            ids = list(
                conn.execute(
                    sql.pick_logs, {"log_cutoff": log_cutoff, "batch": batch_size}
                ).scalars()
            )
            deleted = conn.execute(sql.delete_logs, {"ids": ids}).rowcount if ids else 0
        if not ids:
            break
        report.batches += 1
        report.old_logs_deleted += deleted
        if progress is not None:
            progress(deleted)
    return report


def _delete_task_batch(
    conn: Connection, sql: _Statements, cutoff: datetime, batch_size: int
) -> tuple[int, int, int]:
    """Returns (rows picked, tasks deleted, their log rows)."""
    ids = list(conn.execute(sql.pick_tasks, {"cutoff": cutoff, "batch": batch_size}).scalars())
    if not ids:
        return 0, 0, 0
    logs = conn.execute(sql.count_task_logs, {"ids": ids}).scalar_one()
    deleted = conn.execute(sql.delete_tasks, {"ids": ids, "cutoff": cutoff}).rowcount
    return len(ids), deleted, int(logs)
