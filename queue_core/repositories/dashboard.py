"""What the dashboard (/ui) reads beyond the task and worker repositories, and its sessions.

Every query here is bounded by an index, so a page costs the same with a thousand tasks or a
million (docs/dashboard.md has the plans and the figures):

- throughput counts finished tasks per minute with one range count per minute over
  ``ix_task_queue_finished``: it reads the last hour's index entries, never the table;
- depth reads ``queue_samples``, one row per minute written by the maintenance job ``sample``;
- running tasks walk the partial index of leased rows.
"""

from __future__ import annotations

import builtins
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import (
    CompoundSelect,
    Table,
    bindparam,
    delete,
    func,
    insert,
    literal,
    select,
    union_all,
)
from sqlalchemy.exc import IntegrityError

from queue_core.clock import Clock, utcnow
from queue_core.database import Database
from queue_core.models import DashboardSessionRow, QueueSampleRow
from queue_core.repositories._common import TASKS
from queue_core.repositories.counts import ALL_STATES, count_by_type
from queue_core.settings import QUEUE_SAMPLE_RETENTION_SECONDS, UI_CHART_MINUTES
from queue_core.states import TaskStatus
from queue_core.types import UtcDateTime

SESSIONS: Table = DashboardSessionRow.__table__  # type: ignore[assignment]
SAMPLES: Table = QueueSampleRow.__table__  # type: ignore[assignment]

MINUTE = timedelta(minutes=1)
RUNNING_TASKS_MAX = 1000


@dataclass(frozen=True)
class MinuteCount:
    start_utc: datetime
    count: int


@dataclass(frozen=True)
class QueueSample:
    sampled_at_utc: datetime
    queued: int
    due: int
    leased: int


@dataclass(frozen=True)
class RunningTask:
    task_id: int
    type: str
    worker_id: str | None
    started_utc: datetime | None
    lease_until_utc: datetime | None


@functools.lru_cache(maxsize=8)
def _throughput_statement(minutes: int) -> CompoundSelect[int, int]:
    """Built once per window length: building 60 SELECTs costs far more than running them."""
    finished = TASKS.c.finished_at_utc
    edges = [bindparam(f"e{i}", type_=UtcDateTime()) for i in range(minutes + 1)]
    return union_all(
        *(
            select(literal(i).label("bucket"), func.count().label("n"))
            .select_from(TASKS)
            .where(finished >= edges[i], finished < edges[i + 1])
            for i in range(minutes)
        )
    )


class DashboardRepository:
    def __init__(self, db: Database, clock: Clock = utcnow) -> None:
        self.db = db
        self.clock = clock

    def throughput(self, minutes: int = UI_CHART_MINUTES) -> builtins.list[MinuteCount]:
        """Tasks finished (completed, failed or cancelled) in each of the last ``minutes``
        minutes, oldest first. One statement of range counts: each reads only the index
        entries of its minute."""
        now = self.clock()
        edges = [now - MINUTE * (minutes - i) for i in range(minutes + 1)]
        statement = _throughput_statement(minutes)
        with self.db.read() as conn:
            rows = conn.execute(statement, {f"e{i}": edge for i, edge in enumerate(edges)})
            counts = {bucket: n for bucket, n in rows}
        return [MinuteCount(edges[i], int(counts.get(i, 0))) for i in range(minutes)]

    def counts(self, statuses: Sequence[str] | None = None) -> dict[str, dict[str, int]]:
        """Tasks per type and state (all states, or ``statuses``), each state counted from the
        index that holds it (repositories/counts.py)."""
        with self.db.read() as conn:
            return count_by_type(conn, ALL_STATES if statuses is None else statuses)

    def oldest_due_age_seconds(self) -> float | None:
        """How long the oldest due queued task has waited (None when none is due). A task
        still waiting for its dependencies is not due."""
        now = self.clock()
        with self.db.read() as conn:
            oldest = conn.execute(
                select(func.min(TASKS.c.run_after_utc)).where(
                    TASKS.c.status == TaskStatus.QUEUED.value,
                    TASKS.c.pending_deps == 0,  # the claim indexes' condition: waiting on
                    TASKS.c.run_after_utc <= now,  # dependencies is not "due"
                )
            ).scalar()
        return None if oldest is None else max(0.0, (now - oldest).total_seconds())

    def depth(self, minutes: int = UI_CHART_MINUTES) -> builtins.list[QueueSample]:
        """The samples of the last ``minutes`` minutes, oldest first."""
        since = self.clock() - MINUTE * minutes
        query = (
            select(SAMPLES)
            .where(SAMPLES.c.sampled_at_utc >= since)
            .order_by(SAMPLES.c.sampled_at_utc)
        )
        with self.db.read() as conn:
            return [
                QueueSample(row.sampled_at_utc, row.queued, row.due, row.leased)
                for row in conn.execute(query)
            ]

    def record_sample(self) -> QueueSample:
        """Count the queue now and keep it as this minute's sample (a second sample in the
        same minute is dropped); forget samples past their retention."""
        now = self.clock()
        minute = now.replace(second=0, microsecond=0)
        queued = TaskStatus.QUEUED.value
        with self.db.read() as conn:
            counts = conn.execute(
                select(
                    select(func.count())
                    .select_from(TASKS)
                    .where(TASKS.c.status == queued)
                    .scalar_subquery(),
                    select(func.count())
                    .select_from(TASKS)
                    .where(
                        TASKS.c.status == queued,
                        TASKS.c.pending_deps == 0,
                        TASKS.c.run_after_utc <= now,
                    )
                    .scalar_subquery(),
                    select(func.count())
                    .select_from(TASKS)
                    .where(TASKS.c.status == TaskStatus.LEASED.value)
                    .scalar_subquery(),
                )
            ).one()
        sample = QueueSample(minute, int(counts[0]), int(counts[1]), int(counts[2]))
        try:
            with self.db.write() as conn:
                conn.execute(
                    insert(SAMPLES).values(
                        sampled_at_utc=sample.sampled_at_utc,
                        queued=sample.queued,
                        due=sample.due,
                        leased=sample.leased,
                    )
                )
        except IntegrityError:
            pass  # another process sampled this minute already
        with self.db.write() as conn:
            conn.execute(
                delete(SAMPLES).where(
                    SAMPLES.c.sampled_at_utc
                    < now - timedelta(seconds=QUEUE_SAMPLE_RETENTION_SECONDS)
                )
            )
        return sample

    def running_tasks(self) -> builtins.list[RunningTask]:
        """Leased tasks (at most RUNNING_TASKS_MAX), oldest lease first."""
        query = (
            select(
                TASKS.c.id,
                TASKS.c.type,
                TASKS.c.locked_by,
                TASKS.c.processing_started_utc,
                TASKS.c.lease_until_utc,
            )
            .where(TASKS.c.status == TaskStatus.LEASED.value)
            .order_by(TASKS.c.lease_until_utc)
            .limit(RUNNING_TASKS_MAX)
        )
        with self.db.read() as conn:
            return [RunningTask(*row) for row in conn.execute(query)]


class DashboardSessionRepository:
    """Signed-in dashboard sessions, by the SHA-256 of their id (never the id itself)."""

    def __init__(self, db: Database, clock: Clock = utcnow) -> None:
        self.db = db
        self.clock = clock

    def create(self, session_hash: str, expires_at_utc: datetime) -> None:
        now = self.clock()
        with self.db.write() as conn:
            conn.execute(delete(SESSIONS).where(SESSIONS.c.expires_at_utc <= now))
            conn.execute(
                insert(SESSIONS).values(
                    session_hash=session_hash, created_at_utc=now, expires_at_utc=expires_at_utc
                )
            )

    def is_active(self, session_hash: str) -> bool:
        with self.db.read() as conn:
            expires = conn.execute(
                select(SESSIONS.c.expires_at_utc).where(SESSIONS.c.session_hash == session_hash)
            ).scalar()
        return expires is not None and expires > self.clock()

    def end(self, session_hash: str) -> None:
        with self.db.write() as conn:
            conn.execute(delete(SESSIONS).where(SESSIONS.c.session_hash == session_hash))
