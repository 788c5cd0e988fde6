"""ScheduleRepository: periodic tasks (CONTRACT §9), and the round that enqueues due ones.

Exactly one task per due time, whatever the number of runners, is guarded in the database
twice over:

1. each due time's task is enqueued under the idempotency key ``schedule:<name>:<due time>``
   (``queue_core.scheduling.due_key``): a second runner that enqueues the same due time gets
   the existing task back, and inserts nothing;
2. ``next_due_utc`` moves forward only after the task is committed, by a compare-and-set on
   its old value: a runner that dies in between leaves the due time pending, and the next
   runner's enqueue of it is the replay of (1). Nothing is skipped and nothing is doubled.

The election of one runner per database (``maintenance_leases``) only keeps the others from
doing the work twice for nothing.
"""

from __future__ import annotations

import builtins
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Table, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from queue_core.clock import Clock, ensure_utc, utcnow
from queue_core.database import Database
from queue_core.errors import IdempotencyConflict, ScheduleExists, ScheduleNotFound
from queue_core.models import ScheduleRow
from queue_core.repositories._common import TASKS
from queue_core.repositories.tasks import TaskRepository
from queue_core.scheduling import CatchUp, Cron, DuePlan, due_key, plan_due
from queue_core.schemas import Schedule, ScheduleCreate, Task, TaskCreate
from queue_core.settings import SCHEDULE_CATCH_UP_DEFAULT, SCHEDULE_TIMEZONE_DEFAULT
from queue_core.validation import encode_document

SCHEDULES: Table = ScheduleRow.__table__  # type: ignore[assignment]

SOURCE_API = "api"
SOURCE_CODE = "code"

log = logging.getLogger("prismq.queue.schedules")


@dataclass(frozen=True)
class ScheduledTask:
    """One task a scheduler round enqueued (or found already enqueued by another runner)."""

    schedule: str
    due_utc: datetime
    task_id: int
    created: bool


def _from_row(row: Row[Any]) -> Schedule:
    m = row._mapping
    return Schedule(
        name=m["name"],
        type=m["type"],
        cron=m["cron"],
        timezone=m["timezone"],
        payload=m["payload"],
        priority=m["priority"],
        catch_up=m["catch_up"],
        paused=bool(m["paused"]),
        source=m["source"],
        next_due_utc=m["next_due_utc"],
        last_due_utc=m["last_due_utc"],
        last_task_id=m["last_task_id"],
        created_at_utc=m["created_at_utc"],
        updated_at_utc=m["updated_at_utc"],
    )


class ScheduleRepository:
    """Add, inspect, pause, resume, run and remove schedules; enqueue the due ones."""

    def __init__(
        self, db: Database, clock: Clock = utcnow, tasks: TaskRepository | None = None
    ) -> None:
        self.db = db
        self.clock = clock
        self._tasks = tasks

    @property
    def tasks(self) -> TaskRepository:
        if self._tasks is None:
            self._tasks = TaskRepository(self.db, self.clock)
        return self._tasks

    # --- inspect ---

    def list(self) -> builtins.list[Schedule]:
        with self.db.read() as conn:
            return [
                _from_row(r) for r in conn.execute(select(SCHEDULES).order_by(SCHEDULES.c.name))
            ]

    def get(self, name: str) -> Schedule:
        with self.db.read() as conn:
            row = conn.execute(select(SCHEDULES).where(SCHEDULES.c.name == name)).first()
        if row is None:
            raise ScheduleNotFound(name)
        return _from_row(row)

    # --- manage ---

    def add(
        self, spec: ScheduleCreate | None = None, /, *, source: str = SOURCE_API, **fields: Any
    ) -> Schedule:
        """Add a schedule. It starts at its first due time after now. ScheduleExists when the
        name is taken; InvalidSchedule for a bad cron expression or time zone."""
        spec = spec if spec is not None else ScheduleCreate(**fields)
        cron = Cron(spec.cron, spec.timezone)
        # The payload goes into every task the schedule enqueues: refuse now what enqueue
        # would refuse then (size, depth, NaN, NUL, integers past 64 bits).
        encode_document("payload", spec.payload, self.db.settings)
        now = ensure_utc(self.clock())
        values = {
            **spec.model_dump(),
            "source": source,
            "paused": False,
            "next_due_utc": cron.next_after(now),
            "created_at_utc": now,
            "updated_at_utc": now,
        }
        try:
            with self.db.write() as conn:
                exists = conn.execute(
                    select(SCHEDULES.c.name).where(SCHEDULES.c.name == spec.name)
                ).first()
                if exists is not None:
                    raise ScheduleExists(spec.name)
                row = conn.execute(insert(SCHEDULES).values(**values).returning(*SCHEDULES.c)).one()
        except IntegrityError as exc:  # PostgreSQL: a concurrent add of the same name
            raise ScheduleExists(spec.name) from exc
        return _from_row(row)

    def declare(
        self,
        name: str,
        type: str,
        cron: str,
        *,
        timezone: str = SCHEDULE_TIMEZONE_DEFAULT,
        payload: dict[str, Any] | None = None,
        priority: int | None = None,
        catch_up: CatchUp | str = SCHEDULE_CATCH_UP_DEFAULT,
    ) -> Schedule:
        """The schedule a ``@task(cron=...)`` declares, created or brought up to date.

        Idempotent: every worker that imports the module declares it, at every start. An
        unchanged declaration writes nothing; a changed cron expression or time zone restarts
        the schedule at its first due time after now; paused stays as the operators left it.
        """
        fields: dict[str, Any] = {
            "name": name,
            "type": type,
            "cron": cron,
            "timezone": timezone,
            "payload": payload or {},
            "catch_up": str(catch_up),
        }
        if priority is not None:
            fields["priority"] = priority
        spec = ScheduleCreate(**fields)
        parsed = Cron(spec.cron, spec.timezone)
        encode_document("payload", spec.payload, self.db.settings)
        try:
            current = self.get(name)
        except ScheduleNotFound:
            try:
                return self.add(spec, source=SOURCE_CODE)
            except ScheduleExists:  # another worker declared it first
                current = self.get(name)
        wanted = spec.model_dump()
        have = current.model_dump(include=set(wanted))
        if have == wanted and current.source == SOURCE_CODE:
            return current
        now = ensure_utc(self.clock())
        values: dict[str, Any] = {**wanted, "source": SOURCE_CODE, "updated_at_utc": now}
        if (current.cron, current.timezone) != (spec.cron, spec.timezone):
            values["next_due_utc"] = parsed.next_after(now)
        return self._update(name, **values)

    def remove(self, name: str) -> None:
        with self.db.write() as conn:
            if not conn.execute(delete(SCHEDULES).where(SCHEDULES.c.name == name)).rowcount:
                raise ScheduleNotFound(name)

    def pause(self, name: str) -> Schedule:
        return self._update(name, paused=True, updated_at_utc=ensure_utc(self.clock()))

    def resume(self, name: str) -> Schedule:
        """Resume a schedule: due times that passed while it was paused are not enqueued; it
        goes on at its first due time after now."""
        schedule = self.get(name)
        if not schedule.paused:
            return schedule
        now = ensure_utc(self.clock())
        upcoming = Cron(schedule.cron, schedule.timezone).next_after(now)
        return self._update(name, paused=False, next_due_utc=upcoming, updated_at_utc=now)

    def run(self, name: str) -> Task:
        """Enqueue one task of the schedule now, outside its due times."""
        schedule = self.get(name)
        spec = TaskCreate(type=schedule.type, payload=schedule.payload, priority=schedule.priority)
        return self.tasks.enqueue(spec, schedule=name).task

    def _update(self, schedule_name: str, /, **values: Any) -> Schedule:
        with self.db.write() as conn:
            row = conn.execute(
                update(SCHEDULES)
                .where(SCHEDULES.c.name == schedule_name)
                .values(**values)
                .returning(*SCHEDULES.c)
            ).first()
        if row is None:
            raise ScheduleNotFound(schedule_name)
        return _from_row(row)

    # --- the scheduler's round ---

    def enqueue_due(self) -> builtins.list[ScheduledTask]:
        """Enqueue every due time of every active schedule, as its catch-up policy says.

        Safe to run from several processes at once (see the module's docstring)."""
        now = ensure_utc(self.clock())
        with self.db.read() as conn:
            rows = conn.execute(
                select(SCHEDULES)
                .where(SCHEDULES.c.paused.is_(False), SCHEDULES.c.next_due_utc <= now)
                .order_by(SCHEDULES.c.next_due_utc)
            ).all()
        done: builtins.list[ScheduledTask] = []
        for row in rows:
            schedule = _from_row(row)
            try:
                done += self._enqueue_schedule(schedule, now)
            except Exception:  # one broken schedule (a type renamed, ...) must not stop the rest
                log.exception("schedule %s: cannot enqueue its due tasks", schedule.name)
        return done

    def _enqueue_schedule(self, schedule: Schedule, now: datetime) -> builtins.list[ScheduledTask]:
        cron = Cron(schedule.cron, schedule.timezone)
        plan: DuePlan = plan_due(cron, schedule.next_due_utc, now, schedule.catch_up)
        enqueued: builtins.list[ScheduledTask] = []
        for due in plan.enqueue:
            key = due_key(schedule.name, due)
            spec = TaskCreate(
                type=schedule.type,
                payload=schedule.payload,
                priority=schedule.priority,
                idempotency_key=key,
            )
            try:
                result = self.tasks.enqueue(spec, schedule=schedule.name)
                enqueued.append(
                    ScheduledTask(schedule.name, due, result.task.task_id, result.created)
                )
            except IdempotencyConflict as exc:
                # The due time's task exists with an older payload: it is enqueued already.
                enqueued.append(ScheduledTask(schedule.name, due, exc.task_id, False))
        if plan.skipped:
            log.info(
                "schedule %s: %d missed due time(s) skipped (catch-up %s)",
                schedule.name,
                plan.skipped,
                schedule.catch_up,
            )
        values: dict[str, Any] = {"next_due_utc": plan.next_due, "updated_at_utc": now}
        if enqueued:
            values.update(last_due_utc=enqueued[-1].due_utc, last_task_id=enqueued[-1].task_id)
        with self.db.write() as conn:
            # Compare-and-set: only the runner that saw this next_due moves it on.
            conn.execute(
                update(SCHEDULES)
                .where(
                    SCHEDULES.c.name == schedule.name,
                    SCHEDULES.c.next_due_utc == schedule.next_due_utc,
                )
                .values(**values)
            )
        return enqueued

    def tasks_of(self, name: str, limit: int = 100) -> builtins.list[int]:
        """Ids of the tasks a schedule enqueued, newest first."""
        with self.db.read() as conn:
            return list(
                conn.execute(
                    select(TASKS.c.id)
                    .where(TASKS.c.schedule == name)
                    .order_by(TASKS.c.id.desc())
                    .limit(limit)
                ).scalars()
            )
