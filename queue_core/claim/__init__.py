"""Claiming: the TaskClaimer protocol, the strategies' claimers, and the factory.

A claim is one raw SQL statement per strategy and dialect (``claim/sqlite.py``,
``claim/postgresql.py``). It leases up to ``limit`` due tasks of the worker's types whose
``compatibility`` the worker's capabilities satisfy, increments their attempts, and bumps
their lease token. The caller runs it inside a write transaction (BEGIN IMMEDIATE on SQLite).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import ModuleType
from typing import Any, Protocol

import orjson
from sqlalchemy import Connection, TextualSelect, bindparam, column, text
from sqlalchemy.types import Boolean, Float, Integer, String

from queue_core.claim import postgresql as postgresql_sql
from queue_core.claim import sqlite as sqlite_sql
from queue_core.states import SchedulingStrategy
from queue_core.types import JsonDocument, UtcDateTime


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

    def claim(self, conn: Connection, request: ClaimRequest, now: datetime) -> list[ClaimedTask]:
        """Lease up to ``request.limit`` tasks; the caller owns the transaction."""


_DIALECT_SQL: dict[str, ModuleType] = {"sqlite": sqlite_sql, "postgresql": postgresql_sql}

_SORT_KEYS: dict[SchedulingStrategy, Callable[[ClaimedTask], Any]] = {
    SchedulingStrategy.FIFO: lambda t: (t.run_after_utc, t.task_id),
    SchedulingStrategy.LIFO: lambda t: (-t.run_after_utc.timestamp(), -t.task_id),
    SchedulingStrategy.PRIORITY: lambda t: (t.priority, t.run_after_utc, t.task_id),
    SchedulingStrategy.WEIGHTED_RANDOM: lambda t: (t.wr_key, t.task_id),
}


def _claim_statement(sql: str) -> TextualSelect:
    return (
        text(sql)
        .bindparams(
            bindparam("now", type_=UtcDateTime()),
            bindparam("lease_until", type_=UtcDateTime()),
        )
        .columns(
            column("id", Integer),
            column("type", String),
            column("payload", JsonDocument),
            column("priority", Integer),
            column("attempts", Integer),
            column("max_attempts", Integer),
            column("lease_token", Integer),
            column("timeout_seconds", Float),
            column("run_after_utc", UtcDateTime),
            column("lease_until_utc", UtcDateTime),
            column("cancel_requested", Boolean),
            column("wr_key", Float),
        )
    )


class SqlClaimer:
    """Runs the strategy's claim statement for one dialect."""

    def __init__(self, dialect: str, strategy: SchedulingStrategy) -> None:
        self.dialect = dialect
        self.strategy = strategy
        self._statement = _claim_statement(_DIALECT_SQL[dialect].CLAIM_SQL[strategy])
        self._sort_key = _SORT_KEYS[strategy]
        self._encode_types: Callable[[Sequence[str]], Any] = _DIALECT_SQL[dialect].encode_types

    def claim(self, conn: Connection, request: ClaimRequest, now: datetime) -> list[ClaimedTask]:
        if request.limit < 1 or not request.types:
            return []
        rows = conn.execute(
            self._statement,
            {
                "worker_id": request.worker_id,
                "now": now,
                "lease_until": now + timedelta(seconds=request.lease_seconds),
                "types": self._encode_types(request.types),
                "capabilities": orjson.dumps(dict(request.capabilities)).decode(),
                "limit": request.limit,
            },
        ).all()
        claimed = [
            ClaimedTask(
                task_id=row.id,
                type=row.type,
                payload=row.payload,
                priority=row.priority,
                attempt=row.attempts,
                max_attempts=row.max_attempts,
                lease_token=row.lease_token,
                timeout_seconds=row.timeout_seconds,
                run_after_utc=row.run_after_utc,
                lease_until_utc=row.lease_until_utc,
                cancel_requested=bool(row.cancel_requested),
                worker_id=request.worker_id,
                wr_key=row.wr_key,
            )
            for row in rows
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
