"""TypeRepository: flow control per task type (CONTRACT §9): pause, resume, limits.

The state lives in ``task_types``, one row per type that is paused or limited, so it survives
restarts and every worker's claim sees it in the claim transaction itself. A type with no row
is neither paused nor limited; the claim of such types never looks further (the row's absence
is the whole check), so limits cost nothing when none is set.
"""

from __future__ import annotations

import builtins
import re
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Connection, Table, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from queue_core.clock import Clock, ensure_utc, utcnow
from queue_core.database import Database
from queue_core.errors import QueueError
from queue_core.models import TaskTypeRow
from queue_core.repositories._common import TASKS, WORKERS
from queue_core.schemas import Rate, TaskTypeInfo, TypeLimits
from queue_core.settings import TYPE_MAX_LENGTH, TYPE_PATTERN
from queue_core.states import TaskStatus

TYPES: Table = TaskTypeRow.__table__  # type: ignore[assignment]

_TYPE_RE = re.compile(TYPE_PATTERN)
_UNSET: Any = object()


class InvalidTaskType(QueueError):
    """Not a task type name (CONTRACT §8: letters, digits and _ . : - /)."""


def check_type(name: str) -> str:
    if not name or len(name) > TYPE_MAX_LENGTH or not _TYPE_RE.match(name):
        raise InvalidTaskType(f"invalid task type {name!r}")
    return name


def parse_rate(text: str) -> Rate:
    """``N/SECONDS`` (the CLI's ``--rate``) as a Rate: ``10/60`` is 10 claims a minute."""
    count, sep, per = text.partition("/")
    try:
        if not sep:
            raise ValueError
        return Rate(count=int(count), per_seconds=float(per))
    except (ValueError, ValidationError) as exc:
        raise QueueError(
            f"invalid rate {text!r}: N/SECONDS with N ≥ 1 and SECONDS > 0, e.g. 10/60"
        ) from exc


class TypeRepository:
    def __init__(self, db: Database, clock: Clock = utcnow) -> None:
        self.db = db
        self.clock = clock

    def list(self) -> builtins.list[TaskTypeInfo]:
        """Every type that has queued or leased tasks, is paused or limited, or is served by a
        registered worker; sorted by name."""
        active = (TaskStatus.QUEUED.value, TaskStatus.LEASED.value)
        with self.db.read() as conn:
            controls = {row.type: row for row in conn.execute(select(TYPES))}
            counts = conn.execute(
                select(TASKS.c.type, TASKS.c.status, func.count())
                .where(TASKS.c.status.in_(active))
                .group_by(TASKS.c.type, TASKS.c.status)
            ).all()
            served = conn.execute(
                select(WORKERS.c.task_types).where(WORKERS.c.stopped_at_utc.is_(None))
            ).scalars()
            names = set(controls)
            for types in served:
                names.update(t for t in (types or []) if isinstance(t, str))
        by_type: dict[str, dict[str, int]] = {}
        for task_type, status, count in counts:
            by_type.setdefault(task_type, {})[status] = count
            names.add(task_type)
        return [
            self._info(name, controls.get(name), by_type.get(name, {})) for name in sorted(names)
        ]

    def get(self, task_type: str) -> TaskTypeInfo:
        check_type(task_type)
        with self.db.read() as conn:
            return self._get_in(conn, task_type)

    def _get_in(self, conn: Connection, task_type: str) -> TaskTypeInfo:
        control = conn.execute(select(TYPES).where(TYPES.c.type == task_type)).first()
        counts: dict[str, int] = dict(
            conn.execute(
                select(TASKS.c.status, func.count())
                .where(
                    TASKS.c.type == task_type,
                    TASKS.c.status.in_((TaskStatus.QUEUED.value, TaskStatus.LEASED.value)),
                )
                .group_by(TASKS.c.status)
            ).all()
        )
        return self._info(task_type, control, counts)

    @staticmethod
    def _info(name: str, control: Any, counts: dict[str, int]) -> TaskTypeInfo:
        rate = None
        if control is not None and control.rate_count is not None:
            rate = Rate(count=control.rate_count, per_seconds=control.rate_per_seconds)
        return TaskTypeInfo(
            type=name,
            paused=bool(control.paused) if control is not None else False,
            max_running=control.max_running if control is not None else None,
            rate=rate,
            queued=counts.get(TaskStatus.QUEUED.value, 0),
            leased=counts.get(TaskStatus.LEASED.value, 0),
        )

    def pause(self, task_type: str) -> TaskTypeInfo:
        """No worker claims the type from now on (running tasks finish; enqueue works)."""
        return self._change(task_type, paused=True)

    def resume(self, task_type: str) -> TaskTypeInfo:
        return self._change(task_type, paused=False)

    def set_limits(
        self, task_type: str, limits: TypeLimits | None = None, /, **fields: Any
    ) -> TaskTypeInfo:
        """Set or clear ``max_running`` and ``rate``. A field left out stays as it is; a field
        given as None is cleared."""
        limits = limits if limits is not None else TypeLimits(**fields)
        given = limits.model_fields_set
        change: dict[str, Any] = {}
        if "max_running" in given:
            change["max_running"] = limits.max_running
        if "rate" in given:
            change["rate_count"] = limits.rate.count if limits.rate else None
            change["rate_per_seconds"] = limits.rate.per_seconds if limits.rate else None
        return self._change(task_type, **change)

    def clear_limits(self, task_type: str) -> TaskTypeInfo:
        return self._change(task_type, max_running=None, rate_count=None, rate_per_seconds=None)

    def _change(self, task_type: str, **change: Any) -> TaskTypeInfo:
        check_type(task_type)
        now = ensure_utc(self.clock())
        for attempt in range(2):
            try:
                with self.db.write() as conn:
                    self._apply(conn, task_type, change, now)
                    # A resumed or less limited type may have due work for sleeping workers.
                    self.db.dialect.notify_new_tasks(conn)
                    return self._get_in(conn, task_type)
            except IntegrityError:  # PostgreSQL: another process inserted the row meanwhile
                if attempt:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _apply(conn: Connection, task_type: str, change: dict[str, Any], now: Any) -> None:
        row = conn.execute(select(TYPES).where(TYPES.c.type == task_type)).first()
        current = {
            "paused": bool(row.paused) if row is not None else False,
            "max_running": row.max_running if row is not None else None,
            "rate_count": row.rate_count if row is not None else None,
            "rate_per_seconds": row.rate_per_seconds if row is not None else None,
        }
        wanted = {**current, **change}
        restricted = wanted["paused"] or any(
            wanted[k] is not None for k in ("max_running", "rate_count")
        )
        if not restricted:
            # No row at all for a free type: the claim's check is the row's absence.
            conn.execute(delete(TYPES).where(TYPES.c.type == task_type))
        elif row is None:
            conn.execute(insert(TYPES).values(type=task_type, updated_at_utc=now, **wanted))
        elif wanted != current:
            conn.execute(
                update(TYPES).where(TYPES.c.type == task_type).values(updated_at_utc=now, **wanted)
            )
