"""Claiming: the TaskClaimer protocol, the strategies' claimers, and the factory.

A claim is one raw SQL statement per strategy and dialect (``claim/sqlite.py``,
``claim/postgresql.py``), run on a DBAPI cursor (``claim/raw.py`` says why). It leases up to
``limit`` due tasks of the worker's types whose ``compatibility`` the worker's capabilities
satisfy, increments their attempts, and bumps their lease token. The caller runs it inside a
write transaction (BEGIN IMMEDIATE on SQLite).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import ModuleType
from typing import Any, Protocol

import orjson

from queue_core.claim import postgresql as postgresql_sql
from queue_core.claim import sqlite as sqlite_sql
from queue_core.states import SchedulingStrategy


@dataclass(frozen=True)
class Lease:
    """What a worker must present to change a task it claimed. The token is never reused."""

    task_id: int
    worker_id: str
    lease_token: int
    attempt: int


@dataclass(frozen=True)
class ClaimedTask:
    task_id: int
    type: str
    payload: dict[str, Any]
    priority: int
    attempt: int
    max_attempts: int
    lease_token: int
    timeout_seconds: float | None
    run_after_utc: datetime
    lease_until_utc: datetime
    cancel_requested: bool
    worker_id: str
    wr_key: float | None = None

    @property
    def lease(self) -> Lease:
        return Lease(self.task_id, self.worker_id, self.lease_token, self.attempt)


@dataclass(frozen=True)
class ClaimRequest:
    worker_id: str
    types: Sequence[str]
    capabilities: Mapping[str, Any] = field(default_factory=dict)
    limit: int = 1
    lease_seconds: float = 30.0


class TaskClaimer(Protocol):
    strategy: SchedulingStrategy

    def claim(self, cursor: Any, request: ClaimRequest, now: datetime) -> list[ClaimedTask]:
        """Lease up to ``request.limit`` tasks on a DBAPI cursor; the caller owns the
        transaction."""


_DIALECT_SQL: dict[str, ModuleType] = {"sqlite": sqlite_sql, "postgresql": postgresql_sql}

_SORT_KEYS: dict[SchedulingStrategy, Callable[[ClaimedTask], Any]] = {
    SchedulingStrategy.FIFO: lambda t: (t.run_after_utc, t.task_id),
    SchedulingStrategy.LIFO: lambda t: (-t.run_after_utc.timestamp(), -t.task_id),
    SchedulingStrategy.PRIORITY: lambda t: (t.priority, t.run_after_utc, t.task_id),
    SchedulingStrategy.WEIGHTED_RANDOM: lambda t: (t.wr_key, t.task_id),
}


class SqlClaimer:
    """Runs the strategy's claim statement for one dialect on a DBAPI cursor.

    The cursor comes from :class:`queue_core.claim.raw.RawWriter` (or any DBAPI connection of
    the engine, inside a write transaction). The statement text is built once.
    """

    def __init__(self, dialect: str, strategy: SchedulingStrategy) -> None:
        self.dialect = dialect
        self.strategy = strategy
        self.sql: ModuleType = _DIALECT_SQL[dialect]
        self._statement = self.sql.dbapi_sql(self.sql.CLAIM_SQL[strategy])
        self._sort_key = _SORT_KEYS[strategy]

    def claim(self, cursor: Any, request: ClaimRequest, now: datetime) -> list[ClaimedTask]:
        if request.limit < 1 or not request.types:
            return []
        sql = self.sql
        cursor.execute(
            self._statement,
            {
                "worker_id": request.worker_id,
                "now": sql.bind_time(now),
                "lease_until": sql.bind_time(now + timedelta(seconds=request.lease_seconds)),
                "types": sql.encode_types(request.types),
                "capabilities": orjson.dumps(dict(request.capabilities)).decode(),
                "limit": request.limit,
            },
        )
        read_time, read_json = sql.read_time, sql.read_json
        # Columns in the order of RETURNED_COLUMNS.
        claimed = [
            ClaimedTask(
                task_id=row[0],
                type=row[1],
                payload=read_json(row[2]),
                priority=row[3],
                attempt=row[4],
                max_attempts=row[5],
                lease_token=row[6],
                timeout_seconds=row[7],
                run_after_utc=read_time(row[8]),
                lease_until_utc=read_time(row[9]),
                cancel_requested=bool(row[10]),
                worker_id=request.worker_id,
                wr_key=row[11],
            )
            for row in cursor.fetchall()
        ]
        claimed.sort(key=self._sort_key)
        return claimed


def create_claimer(
    dialect: str,
    strategy: SchedulingStrategy | str,
    rng: random.Random | None = None,
) -> TaskClaimer:
    """The claimer for a dialect and strategy. ``rng`` seeds weighted_random (tests)."""
    strategy = SchedulingStrategy(strategy)
    if dialect not in _DIALECT_SQL:
        raise ValueError(f"no claim SQL for dialect {dialect!r}")
    if strategy is SchedulingStrategy.WEIGHTED_RANDOM:
        from queue_core.claim.weighted import WeightedRandomClaimer

        return WeightedRandomClaimer(dialect, rng)
    return SqlClaimer(dialect, strategy)


__all__ = [
    "ClaimRequest",
    "ClaimedTask",
    "Lease",
    "SqlClaimer",
    "TaskClaimer",
    "create_claimer",
]
