"""TaskRepository: what producers and operators do with tasks."""

from __future__ import annotations

import asyncio
import builtins
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Connection, func, select, text, update
from sqlalchemy.sql import Select

from queue_core import dependencies
from queue_core.audit import log_entry
from queue_core.claims import wakes_sleepers
from queue_core.clock import Clock, ensure_utc, utcnow
from queue_core.database import Database
from queue_core.dialects import LogRow
from queue_core.dialects.weighted import race_weight
from queue_core.errors import IdempotencyConflict, InvalidTransition, TaskNotFound, TaskWaitTimeout
from queue_core.models import CLAIMABLE
from queue_core.repositories._common import (
    DEPENDENCIES,
    LOGS,
    TASKS,
    WORKERS,
    log_from_row,
    task_from_row,
)
from queue_core.repositories.counts import count_by_type
from queue_core.schemas import QueueStats, Task, TaskCreate, TaskLog
from queue_core.settings import (
    LIST_LIMIT_DEFAULT,
    LIST_LIMIT_MAX,
    WAIT_FALLBACK_SECONDS,
    WAIT_POLL_INTERVAL_SECONDS,
)
from queue_core.states import RETRYABLE_STATES, TERMINAL_STATES, TaskStatus
from queue_core.validation import encode_document, json_equal
from queue_core.waiting import wait_for, wait_for_async

SNAPSHOT_CHUNK = 500  # ids or keys per IN (...) list: far below both databases' parameter limits


@dataclass(frozen=True)
class TaskSnapshot:
    """The few columns of a task that say where it is, read without its result."""

    task_id: int
    type: str
    payload: dict[str, Any]
    status: TaskStatus
    attempts: int
    error_message: str | None
    processing_started_utc: datetime | None
    finished_at_utc: datetime | None
    idempotency_key: str | None


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


@dataclass(frozen=True)
class _NewRow:
    """One task about to be inserted: its DBAPI parameters and what its Task needs."""

    spec: TaskCreate
    params: dict[str, Any]
    run_after: datetime
    now: datetime
    due: bool

    @property
    def wakes(self) -> bool:
        """Announced to idle workers (``claims.wakes_sleepers``)."""
        return wakes_sleepers(self.run_after, self.now)

    def task(self, task_id: int) -> Task:
        """The task as the database now holds it, without reading it back."""
        spec = self.spec
        return Task(
            task_id=task_id,
            type=spec.type,
            status=TaskStatus.QUEUED,
            priority=spec.priority,
            attempts=0,
            max_attempts=spec.max_attempts,
            payload=orjson.loads(self.params["payload"]),
            compatibility=orjson.loads(self.params["compatibility"]),
            idempotency_key=spec.idempotency_key,
            run_after_utc=self.run_after,
            created_at_utc=self.now,
            updated_at_utc=self.now,
            processing_started_utc=None,
            finished_at_utc=None,
            locked_by=None,
            lease_until_utc=None,
            cancel_requested=False,
            error_message=None,
            result=None,
            timeout_seconds=spec.timeout_seconds,
            depends_on=sorted(spec.depends_on),
            schedule=self.params["schedule"],
        )


_ENDED_BADLY = (TaskStatus.FAILED.value, TaskStatus.CANCELLED.value)


def _cancelled(
    db: Database, conn: Connection, task_id: int, has_dependents: bool, now: datetime
) -> None:
    """After ``task_id`` was cancelled in the caller's transaction: cancel the dependents
    waiting for it, and announce all of them finished to their waits."""
    cursor = conn.connection.cursor()
    try:
        cancelled = [task_id]
        if has_dependents:
            ended = {task_id: TaskStatus.CANCELLED.value}
            sql, logs = db.dialect.sql, db.log_writer
            cancelled += dependencies.dependencies_ended(cursor, sql, logs, ended, now)
        db.dialect.notify_finished_raw(cursor, cancelled)
    finally:
        cursor.close()


def _unfinished_dependencies(task_id: int) -> Any:
    dep = TASKS.alias("dep")
    return (
        select(func.count())
        .select_from(DEPENDENCIES.join(dep, dep.c.id == DEPENDENCIES.c.depends_on_id))
        .where(
            DEPENDENCIES.c.task_id == task_id,
            dep.c.status != TaskStatus.COMPLETED.value,
        )
        .scalar_subquery()
    )


def _with_dependencies(conn: Connection, tasks: builtins.list[Task]) -> builtins.list[Task]:
    """Fill in ``depends_on`` (one indexed read for the whole list)."""
    if not tasks:
        return tasks
    rows = conn.execute(
        select(DEPENDENCIES.c.task_id, DEPENDENCIES.c.depends_on_id)
        .where(DEPENDENCIES.c.task_id.in_([t.task_id for t in tasks]))
        .order_by(DEPENDENCIES.c.task_id, DEPENDENCIES.c.depends_on_id)
    ).all()
    found: dict[int, builtins.list[int]] = {}
    for task_id, dep in rows:
        found.setdefault(task_id, []).append(dep)
    for task in tasks:
        if task.task_id in found:
            task.depends_on = found[task.task_id]
    return tasks


_SNAPSHOT_COLUMNS = (
    "id",
    "type",
    "payload",
    "status",
    "attempts",
    "error_message",
    "processing_started_utc",
    "finished_at_utc",
    "idempotency_key",
)


def _enqueued_details(
    task_type: str, priority: int, run_after: datetime, key: str | None, now: datetime
) -> dict[str, Any]:
    """The details of an "enqueued" log row (keys without a value are left out)."""
    details: dict[str, Any] = {"event": "enqueued", "type": task_type, "priority": priority}
    if run_after > now:
        details["run_after_utc"] = run_after.isoformat()
    if key is not None:
        details["idempotency_key"] = key
    return details


class TaskRepository:
    """Enqueue, inspect, cancel and retry tasks. Returns detached pydantic objects."""

    def __init__(
        self, db: Database, clock: Clock = utcnow, rng: random.Random | None = None
    ) -> None:
        self.db = db
        self.clock = clock
        self.rng = rng or random.Random()
        # Enqueue runs on a kept DBAPI connection with SQL built once (dialects/connections.py
        # says why).
        self._raw = db.raw
        sql = self._raw.sql
        self._enqueue_sql = sql.dbapi_sql(sql.ENQUEUE_SQL)
        self._by_key_sql = sql.dbapi_sql(sql.TASK_BY_KEY_SQL)
        self._by_id_sql = sql.dbapi_sql(f"SELECT {sql.TASK_COLUMNS} FROM task_queue WHERE id = :id")
        self._enqueue_many_sql = sql.dbapi_sql(sql.ENQUEUE_MANY_SQL)
        self._task_columns = [name.strip() for name in sql.TASK_COLUMNS.split(",")]
        self._log_writer = db.log_writer

    # --- enqueue ---

    def enqueue(
        self, spec: TaskCreate | None = None, /, *, schedule: str | None = None, **fields: Any
    ) -> EnqueueResult:
        """Enqueue one task. A replayed idempotency key returns the existing task
        (``created=False``) when type and payload match, and raises IdempotencyConflict
        otherwise. ``depends_on`` must name existing tasks (DependencyNotFound otherwise);
        ``schedule`` names the schedule that enqueues it (the scheduler's business)."""
        spec = spec if spec is not None else TaskCreate(**fields)
        now = ensure_utc(self.clock())
        row = self._new_row(spec, now, schedule=schedule)
        if spec.depends_on:
            return self._enqueue_dependent(row)
        log = None
        if self._log_writer.routine:
            details = _enqueued_details(
                spec.type, spec.priority, row.run_after, spec.idempotency_key, now
            )
            log = LogRow(0, now, "INFO", "enqueued", details)
        task_id = self.db.dialect.enqueue_logged(self._raw, row.params, log, row.wakes)
        if task_id is not None:
            return EnqueueResult(row.task(task_id), created=True)
        # The idempotency key exists: read it as a replay (or insert, if it went meanwhile).
        # Reading first keeps a replay from trying the INSERT again, which would spend another
        # id.
        with self._raw.transaction() as cursor:
            cursor.execute(self._by_key_sql, {"key": spec.idempotency_key})
            found = cursor.fetchone()
            if found is not None:
                return self._replay(self._task_from_raw(found), row)
            result = self._insert_one(cursor, row)
            if result.created:
                self._log_writer.write(cursor, [self._enqueued_log(result.task, now)])
                if row.wakes:
                    self.db.dialect.notify_new_tasks_raw(cursor)
        return result

    def enqueue_many(self, specs: builtins.list[TaskCreate]) -> builtins.list[Task]:
        """Enqueue a batch in one transaction: all of it or, on any error, none of it."""
        if not specs:
            return []
        now = ensure_utc(self.clock())
        bound_now = self._raw.sql.bind_time(now)  # one conversion for the whole batch
        rows = [self._new_row(spec, now, bound_now) for spec in specs]
        with self._raw.transaction() as cursor:
            if any(spec.depends_on for spec in specs):
                results = [
                    self._insert_dependent(cursor, row)
                    if row.spec.depends_on
                    else self._insert_one(cursor, row)
                    for row in rows
                ]
                tasks = [r.task for r in results]
                created = [r.task for r in results if r.created and not r.task.depends_on]
            elif any(spec.idempotency_key for spec in specs):
                results = [self._insert_one(cursor, row) for row in rows]
                tasks = [r.task for r in results]
                created = [r.task for r in results if r.created]
            else:
                tasks = created = self._insert_batch(cursor, rows)
            self._log_writer.write(cursor, [self._enqueued_log(task, now) for task in created])
            if any(row.wakes for row in rows):
                self.db.dialect.notify_new_tasks_raw(cursor)
        return tasks

    def _enqueue_dependent(self, row: _NewRow) -> EnqueueResult:
        """Enqueue a task with dependencies in a transaction of its own."""
        with self._raw.transaction() as cursor:
            result = self._insert_dependent(cursor, row)
            if result.created and row.wakes and not row.params["pending_deps"]:
                self.db.dialect.notify_new_tasks_raw(cursor)
        return result

    def _insert_dependent(self, cursor: Any, row: _NewRow) -> EnqueueResult:
        """Flag and count the dependencies, insert the task, its edges and its "enqueued" log
        row, in the caller's transaction (queue_core/dependencies.py says why this is
        race-free). A dependency that already failed or was cancelled cancels the task."""
        sql = self._raw.sql
        depends_on = row.spec.depends_on
        statuses = dependencies.mark_dependencies(cursor, sql, depends_on, row.now)
        row.params["pending_deps"] = dependencies.pending_count(statuses)
        result = self._insert_one(cursor, row)
        if not result.created:
            return result
        task_id = result.task.task_id
        dependencies.insert_edges(cursor, sql, task_id, depends_on)
        self._log_writer.write(cursor, [self._enqueued_log(result.task, row.now)])
        ended = {dep: status for dep, status in statuses.items() if status in _ENDED_BADLY}
        if ended and task_id in dependencies.dependencies_ended(
            cursor, sql, self._log_writer, ended, row.now
        ):
            cursor.execute(self._by_id_sql, {"id": task_id})
            task = self._task_from_raw(cursor.fetchone(), depends_on)
            return EnqueueResult(task, created=True)
        return result

    def _new_row(
        self,
        spec: TaskCreate,
        now: datetime,
        bound_now: Any = None,
        *,
        schedule: str | None = None,
    ) -> _NewRow:
        settings = self.db.settings
        sql = self._raw.sql
        if bound_now is None:
            bound_now = sql.bind_time(now)
        payload = encode_document("payload", spec.payload, settings)
        compatibility = encode_document("compatibility", spec.compatibility, settings)
        run_after = spec.run_after_utc or now
        due = run_after <= now
        params = {
            "type": spec.type,
            "priority": spec.priority,
            "payload": payload,
            "compatibility": compatibility,
            "max_attempts": spec.max_attempts,
            "run_after_utc": bound_now if run_after is now else sql.bind_time(run_after),
            "idempotency_key": spec.idempotency_key,
            "now": bound_now,
            "timeout_seconds": spec.timeout_seconds,
            "wr_weight": race_weight(spec.priority, self.rng) if due else None,
            "schedule": schedule,
            "pending_deps": 0,
        }
        return _NewRow(spec, params, run_after, now, due)

    def _insert_one(self, cursor: Any, row: _NewRow) -> EnqueueResult:
        cursor.execute(self._enqueue_sql, row.params)
        inserted = cursor.fetchone()
        if inserted is not None:
            return EnqueueResult(row.task(inserted[0]), created=True)
        key = row.spec.idempotency_key
        assert key is not None  # only a key conflict inserts nothing
        cursor.execute(self._by_key_sql, {"key": key})
        return self._replay(self._task_from_raw(cursor.fetchone()), row)

    def _replay(self, existing: Task, row: _NewRow) -> EnqueueResult:
        """The task already holding the row's idempotency key, if type and payload match."""
        same_payload = json_equal(existing.payload, orjson.loads(row.params["payload"]))
        if existing.type != row.spec.type or not same_payload:
            raise IdempotencyConflict(str(row.spec.idempotency_key), existing.task_id)
        return EnqueueResult(existing, created=False)

    def _insert_batch(self, cursor: Any, rows: builtins.list[_NewRow]) -> builtins.list[Task]:
        ids = self._raw.sql.insert_many(cursor, self._enqueue_many_sql, [r.params for r in rows])
        return [row.task(task_id) for row, task_id in zip(rows, ids, strict=True)]

    def _task_from_raw(self, row: Sequence[Any], depends_on: Sequence[int] = ()) -> Task:
        """A task from a row of TASK_COLUMNS read on the raw connection."""
        sql = self._raw.sql
        task = task_from_row(
            dict(zip(self._task_columns, row, strict=True)),
            read_time=sql.read_time,
            read_json=sql.read_json,
        )
        task.depends_on = sorted(depends_on)
        return task

    @staticmethod
    def _enqueued_log(task: Task, now: datetime) -> dict[str, Any]:
        entry = log_entry(task.task_id, "enqueued", now)
        entry["details"] = _enqueued_details(
            task.type, task.priority, task.run_after_utc, task.idempotency_key, now
        )
        return entry

    # --- inspect ---

    def get(self, task_id: int) -> Task:
        with self.db.read() as conn:
            return self._get_in(conn, task_id)

    @staticmethod
    def _get_in(conn: Connection, task_id: int) -> Task:
        row = conn.execute(select(TASKS).where(TASKS.c.id == task_id)).first()
        if row is None:
            raise TaskNotFound(task_id)
        return _with_dependencies(conn, [task_from_row(row)])[0]

    def snapshots(
        self,
        *,
        ids: Iterable[int] = (),
        idempotency_keys: Iterable[str] = (),
    ) -> builtins.list[TaskSnapshot]:
        """The tasks with these ids or idempotency keys, as :class:`TaskSnapshot` (any order;
        unknown ones are left out). For code that follows many tasks at once, such as the
        workers' run registry."""
        columns = [TASKS.c[name] for name in _SNAPSHOT_COLUMNS]
        found: builtins.list[TaskSnapshot] = []
        with self.db.read() as conn:
            for column, values in (
                (TASKS.c.id, sorted(set(ids))),
                (TASKS.c.idempotency_key, sorted(set(idempotency_keys))),
            ):
                for start in range(0, len(values), SNAPSHOT_CHUNK):
                    chunk = values[start : start + SNAPSHOT_CHUNK]
                    for row in conn.execute(select(*columns).where(column.in_(chunk))):
                        found.append(
                            TaskSnapshot(row[0], row[1], row[2], TaskStatus(row[3]), *row[4:])
                        )
        return found

    # --- wait ---

    def wait(
        self,
        task_id: int,
        timeout: float | None = None,
        *,
        poll_interval: float = WAIT_POLL_INTERVAL_SECONDS,
    ) -> Task:
        """Block until the task is completed, failed or cancelled, and return it (CONTRACT §9).

        Raises TaskNotFound at once for an unknown id, and :class:`TaskWaitTimeout` (a
        ``TimeoutError`` carrying the task as last read) when ``timeout`` seconds pass first.
        The wait sleeps until the database announces the task finished (PostgreSQL: one
        LISTEN connection per Database, shared by every wait), re-reading the task's status
        every ``WAIT_FALLBACK_SECONDS`` in case an announcement was lost, or every
        ``poll_interval`` where nothing is announced (SQLite) or LISTEN fails. Each read holds
        a connection only for itself (:mod:`queue_core.waiting`).
        """
        finished = wait_for(
            self.db.finished_waiters,
            task_id,
            lambda: self._is_terminal(task_id),
            timeout=timeout,
            poll_interval=poll_interval,
            fallback_interval=WAIT_FALLBACK_SECONDS,
        )
        return self._waited(task_id, finished, timeout)

    async def wait_async(
        self,
        task_id: int,
        timeout: float | None = None,
        *,
        poll_interval: float = WAIT_POLL_INTERVAL_SECONDS,
    ) -> Task:
        """:meth:`wait` for an event loop: between reads it awaits an event the listener
        sets, holding neither a thread nor a database connection; each read runs briefly in
        a thread."""
        finished = await wait_for_async(
            self.db.finished_waiters,
            task_id,
            lambda: self._is_terminal(task_id),
            timeout=timeout,
            poll_interval=poll_interval,
            fallback_interval=WAIT_FALLBACK_SECONDS,
        )
        return await asyncio.to_thread(self._waited, task_id, finished, timeout)

    def _is_terminal(self, task_id: int) -> bool:
        """One short read of the task's status alone (the whole task, with its dependencies,
        is read once, when it is done)."""
        with self.db.read() as conn:
            status = conn.execute(select(TASKS.c.status).where(TASKS.c.id == task_id)).scalar()
        if status is None:
            raise TaskNotFound(task_id)
        return TaskStatus(status) in TERMINAL_STATES

    def _waited(self, task_id: int, finished: bool, timeout: float | None) -> Task:
        """The task at the end of a wait; past the deadline (and still not terminal),
        TaskWaitTimeout with it."""
        task = self.get(task_id)
        if not finished and task.status not in TERMINAL_STATES:
            raise TaskWaitTimeout(task, timeout or 0.0)
        return task

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
            return _with_dependencies(conn, [task_from_row(row) for row in conn.execute(query)])

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
            counts = count_by_type(conn)
            oldest_due = conn.execute(
                # The claim indexes' own condition, written out, so the planner takes
                # ix_task_queue_due_fifo: the oldest claimable task is its first entry.
                select(func.min(TASKS.c.run_after_utc)).where(
                    text(CLAIMABLE), TASKS.c.run_after_utc <= now
                )
            ).scalar()
            workers_active = conn.execute(
                select(func.count()).where(
                    WORKERS.c.stopped_at_utc.is_(None), WORKERS.c.heartbeat_utc >= stale_before
                )
            ).scalar_one()
        by_status = dict.fromkeys((s.value for s in TaskStatus), 0)
        by_type: dict[str, dict[str, int]] = {}
        for task_type, per_status in counts.items():
            for status, count in per_status.items():
                by_status[status] = by_status.get(status, 0) + count
            by_type[task_type] = per_status
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

    def cancel(self, task_id: int, *, actor: str | None = None) -> CancelResult:
        """Cancel a queued task at once, or ask the worker of a leased task to stop.
        ``actor`` (e.g. "dashboard") is recorded in the log row's details."""
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
                self._write_logs(
                    conn, [log_entry(task_id, "cancelled", now, event="cancelled", actor=actor)]
                )
                _cancelled(self.db, conn, task_id, row.has_dependents, now)
                return CancelResult(task_from_row(row), immediate=True)
            row = conn.execute(
                update(TASKS)
                .where(TASKS.c.id == task_id, TASKS.c.status == TaskStatus.LEASED.value)
                .values(cancel_requested=True, updated_at_utc=now)
                .returning(*TASKS.c)
            ).first()
            if row is not None:
                task = task_from_row(row)
                self._write_logs(
                    conn,
                    [
                        log_entry(
                            task_id,
                            "cancel requested",
                            now,
                            event="cancel_requested",
                            worker_id=task.locked_by,
                            attempt=task.attempts,
                            actor=actor,
                        )
                    ],
                )
                return CancelResult(task, immediate=False)
            current = self._get_in(conn, task_id)
        raise InvalidTransition(task_id, current.status.value, "cancel")

    def retry(self, task_id: int, *, actor: str | None = None) -> Task:
        """Re-queue a failed or cancelled task with a fresh set of attempts. ``actor`` (e.g.
        "dashboard") is recorded in the log row's details."""
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
                    # A dependent waits again for whichever dependencies are not completed.
                    pending_deps=_unfinished_dependencies(task_id),
                )
                .returning(*TASKS.c)
            ).first()
            if row is None:
                current = self._get_in(conn, task_id)
                raise InvalidTransition(task_id, current.status.value, "retry")
            self._write_logs(
                conn,
                [log_entry(task_id, "requeued by operator", now, event="requeued", actor=actor)],
            )
            self.db.dialect.notify_new_tasks(conn)
            return task_from_row(row)

    def _write_logs(self, conn: Connection, entries: builtins.list[dict[str, Any]]) -> None:
        """The one log writer, on the DBAPI connection under ``conn``'s transaction."""
        cursor = conn.connection.cursor()
        try:
            self._log_writer.write(cursor, entries)
        finally:
            cursor.close()
