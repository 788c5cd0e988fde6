"""TaskRepository: what producers and operators do with tasks."""

from __future__ import annotations

import builtins
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Connection, Float, bindparam, func, select, update
from sqlalchemy.sql import Select

from queue_core.claim.weighted import race_weight
from queue_core.clock import Clock, utcnow
from queue_core.database import Database
from queue_core.errors import IdempotencyConflict, InvalidTransition, TaskNotFound
from queue_core.models import QueueClockRow
from queue_core.repositories._common import (
    LOGS,
    TASKS,
    WORKERS,
    check_document,
    json_equal,
    log_entry,
    log_from_row,
    task_from_row,
    write_logs,
)
from queue_core.schemas import QueueStats, Task, TaskCreate, TaskLog
from queue_core.settings import LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX
from queue_core.states import RETRYABLE_STATES, TaskStatus

CLOCK_TABLE = QueueClockRow.__table__

# A due task joins the weighted_random race at enqueue: key = virtual clock + its weight.
_VTIME = func.coalesce(
    select(CLOCK_TABLE.c.vtime).where(CLOCK_TABLE.c.id == 1).scalar_subquery(), 0.0
)
_WR_KEY = _VTIME + bindparam("wr_weight", type_=Float)


@dataclass(frozen=True)
class EnqueueResult:
    task: Task
    created: bool


@dataclass(frozen=True)
class CancelResult:
    task: Task
    immediate: bool
    """True when the task was queued and is now cancelled; False when a running task was asked
    to stop (``cancel_requested``) and its worker will finish the cancellation."""


class TaskRepository:
    """Enqueue, inspect, cancel and retry tasks. Returns detached pydantic objects."""

    def __init__(
        self, db: Database, clock: Clock = utcnow, rng: random.Random | None = None
    ) -> None:
        self.db = db
        self.clock = clock
        self.rng = rng or random.Random()
        self._insert_one = (
            db.backend.insert_ignoring_key_conflict(TASKS)
            .values(wr_key=_WR_KEY)
            .returning(*TASKS.c)
        )
        self._insert_many = (
            TASKS.insert().values(wr_key=_WR_KEY).returning(*TASKS.c, sort_by_parameter_order=True)
        )

    # --- enqueue ---

    def enqueue(self, spec: TaskCreate | None = None, /, **fields: Any) -> EnqueueResult:
        """Enqueue one task. A replayed idempotency key returns the existing task
        (``created=False``) when type and payload match, and raises IdempotencyConflict
        otherwise."""
        spec = spec if spec is not None else TaskCreate(**fields)
        now = self.clock()
        params = self._row_params(spec, now)
        with self.db.write() as conn:
            result = self._insert_in(conn, spec, params, now)
            if result.created and params["wr_weight"] is not None:
                self.db.backend.notify_new_tasks(conn)
        return result

    def enqueue_many(self, specs: builtins.list[TaskCreate]) -> builtins.list[Task]:
        """Enqueue a batch in one transaction: all of it or, on any error, none of it."""
        if not specs:
            return []
        now = self.clock()
        params = [self._row_params(spec, now) for spec in specs]
        with self.db.write() as conn:
            if any(spec.idempotency_key for spec in specs):
                results = [
                    self._insert_in(conn, s, p, now) for s, p in zip(specs, params, strict=True)
                ]
                tasks = [r.task for r in results]
            else:
                rows = conn.execute(self._insert_many, params).all()
                tasks = [task_from_row(row) for row in rows]
                write_logs(conn, [self._enqueued_log(t, now) for t in tasks])
            if any(p["wr_weight"] is not None for p in params):
                self.db.backend.notify_new_tasks(conn)
        return tasks

    def _row_params(self, spec: TaskCreate, now: datetime) -> dict[str, Any]:
        settings = self.db.settings
        check_document("payload", spec.payload, settings)
        check_document("compatibility", spec.compatibility, settings)
        run_after = spec.run_after_utc or now
        due = run_after <= now
        return {
            "type": spec.type,
            "priority": spec.priority,
            "payload": spec.payload,
            "compatibility": spec.compatibility,
            "status": TaskStatus.QUEUED.value,
            "attempts": 0,
            "max_attempts": spec.max_attempts,
            "run_after_utc": run_after,
            "idempotency_key": spec.idempotency_key,
            "created_at_utc": now,
            "updated_at_utc": now,
            "cancel_requested": False,
            "timeout_seconds": spec.timeout_seconds,
            "lease_token": 0,
            "wr_weight": race_weight(spec.priority, self.rng) if due else None,
        }

    def _insert_in(
        self, conn: Connection, spec: TaskCreate, params: dict[str, Any], now: datetime
    ) -> EnqueueResult:
        row = conn.execute(self._insert_one, params).first()
        if row is not None:
            task = task_from_row(row)
            write_logs(conn, [self._enqueued_log(task, now)])
            return EnqueueResult(task, created=True)
        assert spec.idempotency_key is not None  # only a key conflict inserts nothing
        existing = task_from_row(
            conn.execute(select(TASKS).where(TASKS.c.idempotency_key == spec.idempotency_key)).one()
        )
        same_payload = json_equal(existing.payload, orjson.loads(orjson.dumps(spec.payload)))
        if existing.type != spec.type or not same_payload:
            raise IdempotencyConflict(spec.idempotency_key, existing.task_id)
        return EnqueueResult(existing, created=False)

    @staticmethod
    def _enqueued_log(task: Task, now: datetime) -> dict[str, Any]:
        return log_entry(
            task.task_id,
            "enqueued",
            now,
            event="enqueued",
            type=task.type,
            priority=task.priority,
            run_after_utc=task.run_after_utc.isoformat() if task.run_after_utc > now else None,
            idempotency_key=task.idempotency_key,
        )

    # --- inspect ---

    def get(self, task_id: int) -> Task:
        with self.db.read() as conn:
            return self._get_in(conn, task_id)

    @staticmethod
    def _get_in(conn: Connection, task_id: int) -> Task:
        row = conn.execute(select(TASKS).where(TASKS.c.id == task_id)).first()
        if row is None:
            raise TaskNotFound(task_id)
        return task_from_row(row)

    def list(
        self,
        *,
        status: TaskStatus | str | None = None,
        type: str | None = None,
        limit: int = LIST_LIMIT_DEFAULT,
        before_id: int | None = None,
    ) -> builtins.list[Task]:
        """Newest first. Pass the last task_id of a page as ``before_id`` for the next page."""
        limit = max(1, min(limit, LIST_LIMIT_MAX))
        query: Select[Any] = select(TASKS).order_by(TASKS.c.id.desc()).limit(limit)
        if status is not None:
            query = query.where(TASKS.c.status == TaskStatus(status).value)
        if type is not None:
            query = query.where(TASKS.c.type == type)
        if before_id is not None:
            query = query.where(TASKS.c.id < before_id)
        with self.db.read() as conn:
            return [task_from_row(row) for row in conn.execute(query)]

    def logs(self, task_id: int) -> builtins.list[TaskLog]:
        with self.db.read() as conn:
            self._get_in(conn, task_id)
            rows = conn.execute(
                select(LOGS).where(LOGS.c.task_id == task_id).order_by(LOGS.c.log_id)
            )
            return [log_from_row(row) for row in rows]

    def stats(self) -> QueueStats:
        now = self.clock()
        stale_before = now - timedelta(seconds=self.db.settings.worker_stale_after_seconds)
        with self.db.read() as conn:
            counts = conn.execute(
                select(TASKS.c.type, TASKS.c.status, func.count()).group_by(
                    TASKS.c.type, TASKS.c.status
                )
            ).all()
            oldest_due = conn.execute(
                select(func.min(TASKS.c.run_after_utc)).where(
                    TASKS.c.status == TaskStatus.QUEUED.value, TASKS.c.run_after_utc <= now
                )
            ).scalar()
            workers_active = conn.execute(
                select(func.count()).where(
                    WORKERS.c.stopped_at_utc.is_(None), WORKERS.c.heartbeat_utc >= stale_before
                )
            ).scalar_one()
        by_status = dict.fromkeys((s.value for s in TaskStatus), 0)
        by_type: dict[str, dict[str, int]] = {}
        for task_type, status, count in counts:
            by_status[status] = by_status.get(status, 0) + count
            by_type.setdefault(task_type, {})[status] = count
        return QueueStats(
            total_tasks=sum(by_status.values()),
            queued_tasks=by_status["queued"],
            leased_tasks=by_status["leased"],
            processing_tasks=by_status["leased"],
            completed_tasks=by_status["completed"],
            failed_tasks=by_status["failed"],
            cancelled_tasks=by_status["cancelled"],
            oldest_queued_age_seconds=(
                max(0.0, (now - oldest_due).total_seconds()) if oldest_due else None
            ),
            by_type=by_type,
            workers_active=workers_active,
        )

    # --- act ---

    def cancel(self, task_id: int) -> CancelResult:
        """Cancel a queued task at once, or ask the worker of a leased task to stop."""
        now = self.clock()
        with self.db.write() as conn:
            row = conn.execute(
                update(TASKS)
                .where(TASKS.c.id == task_id, TASKS.c.status == TaskStatus.QUEUED.value)
                .values(
                    status=TaskStatus.CANCELLED.value,
                    finished_at_utc=now,
                    updated_at_utc=now,
                    wr_key=None,
                )
                .returning(*TASKS.c)
            ).first()
            if row is not None:
                write_logs(conn, [log_entry(task_id, "cancelled", now, event="cancelled")])
                return CancelResult(task_from_row(row), immediate=True)
            row = conn.execute(
                update(TASKS)
                .where(TASKS.c.id == task_id, TASKS.c.status == TaskStatus.LEASED.value)
                .values(cancel_requested=True, updated_at_utc=now)
                .returning(*TASKS.c)
            ).first()
            if row is not None:
                task = task_from_row(row)
                write_logs(
                    conn,
                    [
                        log_entry(
                            task_id,
                            "cancel requested",
                            now,
                            event="cancel_requested",
                            worker_id=task.locked_by,
                            attempt=task.attempts,
                        )
                    ],
                )
                return CancelResult(task, immediate=False)
            current = self._get_in(conn, task_id)
        raise InvalidTransition(task_id, current.status.value, "cancel")

    def retry(self, task_id: int) -> Task:
        """Re-queue a failed or cancelled task with a fresh set of attempts."""
        now = self.clock()
        with self.db.write() as conn:
            row = conn.execute(
                update(TASKS)
                .where(
                    TASKS.c.id == task_id,
                    TASKS.c.status.in_([s.value for s in RETRYABLE_STATES]),
                )
                .values(
                    status=TaskStatus.QUEUED.value,
                    attempts=0,
                    run_after_utc=now,
                    finished_at_utc=None,
                    lease_until_utc=None,
                    locked_by=None,
                    cancel_requested=False,
                    result=None,
                    updated_at_utc=now,
                    wr_key=None,
                )
                .returning(*TASKS.c)
            ).first()
            if row is None:
                current = self._get_in(conn, task_id)
                raise InvalidTransition(task_id, current.status.value, "retry")
            write_logs(conn, [log_entry(task_id, "requeued by operator", now, event="requeued")])
            self.db.backend.notify_new_tasks(conn)
            return task_from_row(row)
