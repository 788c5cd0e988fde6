"""Claiming: the TaskClaimer protocol and the claimer that runs a strategy's statement.

A claim is one raw SQL statement per strategy and dialect (``dialects/sqlite_sql.py``,
``dialects/postgresql_sql.py``), run on a DBAPI cursor (``dialects/connections.py`` says why).
It leases up to ``limit`` due tasks of the worker's types whose ``compatibility`` the worker's
capabilities satisfy, increments their attempts, and bumps their lease token. The caller runs
it inside a write transaction (BEGIN IMMEDIATE on SQLite).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from types import ModuleType
from typing import Any, Protocol

import orjson

from queue_core.claims import ClaimedTask, ClaimRequest
from queue_core.dialects.flow import FlowStatements, claim_limited
from queue_core.states import SchedulingStrategy


class TaskClaimer(Protocol):
    strategy: SchedulingStrategy

    def claim(self, cursor: Any, request: ClaimRequest, now: datetime) -> list[ClaimedTask]:
        """Lease up to ``request.limit`` tasks on a DBAPI cursor; the caller owns the
        transaction."""


_SORT_KEYS: dict[SchedulingStrategy, Callable[[ClaimedTask], Any]] = {
    SchedulingStrategy.FIFO: lambda t: (t.run_after_utc, t.task_id),
    SchedulingStrategy.LIFO: lambda t: (-t.run_after_utc.timestamp(), -t.task_id),
    SchedulingStrategy.PRIORITY: lambda t: (t.priority, t.run_after_utc, t.task_id),
    SchedulingStrategy.WEIGHTED_RANDOM: lambda t: (t.wr_key, t.task_id),
}


class SqlClaimer:
    """Runs the strategy's claim statement of one dialect's SQL module on a DBAPI cursor.

    The cursor comes from :class:`queue_core.dialects.connections.RawWriter` (or any DBAPI
    connection of the engine, inside a write transaction). The statement text is built once.
    """

    def __init__(self, sql: ModuleType, strategy: SchedulingStrategy) -> None:
        self.strategy = strategy
        self.sql = sql
        self._statement = sql.dbapi_sql(sql.CLAIM_SQL[strategy])
        self._setup = tuple(sql.dbapi_sql(statement) for statement in sql.CLAIM_SETUP_SQL)
        setup_limited = sql.CLAIM_SETUP_LIMITED_TYPES_SQL
        self._setup_limited = sql.dbapi_sql(setup_limited) if setup_limited else None
        self._limited_statement = sql.dbapi_sql(sql.CLAIM_LIMITED_SQL[strategy])
        self._flow = FlowStatements(sql)
        self._sort_key = _SORT_KEYS[strategy]

    def claim(self, cursor: Any, request: ClaimRequest, now: datetime) -> list[ClaimedTask]:
        if request.limit < 1 or not request.types:
            return []
        limited: list[str] | None = None  # the worker's limited types, when read up front
        if self._setup_limited is not None:
            # What pins the claim's plan and the limited types, in one round trip.
            cursor.execute(self._setup_limited, {"types": self.sql.encode_types(request.types)})
            limited = list(cursor.fetchone()[-1])
        else:
            for setup in self._setup:  # what pins the claim's plan (see CLAIM_SETUP_SQL)
                cursor.execute(setup)
        claimed = self._run(cursor, self._statement, request, now)
        free = request.limit - len(claimed)
        if free > 0 and limited != []:
            # Slots left: serve the worker's limited types, if any (dialects/flow.py). Types
            # without a task_types row never get here while the common claim fills the slots.
            claimed += claim_limited(
                cursor,
                self._flow,
                request,
                now,
                free,
                lambda one_type: self._run(cursor, self._limited_statement, one_type, now),
                limited,
            )
            claimed.sort(key=self._sort_key)
        return claimed

    def _run(
        self, cursor: Any, statement: str, request: ClaimRequest, now: datetime
    ) -> list[ClaimedTask]:
        sql = self.sql
        cursor.execute(
            statement,
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


def create_claimer(sql: ModuleType, strategy: SchedulingStrategy, rng: Any = None) -> TaskClaimer:
    """The claimer of a strategy over one dialect's SQL. ``rng`` seeds weighted_random."""
    if strategy is SchedulingStrategy.WEIGHTED_RANDOM:
        from queue_core.dialects.weighted import WeightedRandomClaimer

        return WeightedRandomClaimer(sql, rng)
    return SqlClaimer(sql, strategy)
