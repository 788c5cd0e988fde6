"""Global limits per task type, enforced in the claim transaction (CONTRACT §9).

The common claim statement takes none of the types that have a ``task_types`` row (paused or
limited). When it leaves slots free, :func:`claim_limited` serves the worker's limited types,
one at a time, inside the same transaction:

1. lock the type's row (PostgreSQL ``FOR UPDATE``; SQLite's ``BEGIN IMMEDIATE`` already holds
   the database's only write lock), so that limited claims of one type run one after another;
2. count its ``leased`` tasks (``ix_task_queue_lease_until``) and its claims still inside the
   rate window (``task_type_claims``, older ones deleted first);
3. claim at most ``min(free slots, max_running - leased, rate count - recent claims)`` tasks
   with the strategy's limited statement, and record one claim time per task.

Each count is exact: nothing else can lease a task of the type in between (the common claim
skips it, other limited claims wait on the lock), so no instant ever has more than
``max_running`` leased and no window of ``per_seconds`` more than ``count`` claims. Claim times
come from the claiming worker's clock: hosts must keep their clocks in step (NTP).

Paused types have a row too, and :data:`LIMITED_TYPES_SQL` leaves them out: nobody claims them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from types import ModuleType
from typing import Any

from queue_core.claims import ClaimedTask, ClaimRequest

COUNT_LEASED_SQL = "SELECT count(*) FROM task_queue WHERE status = 'leased' AND type = :type"
PRUNE_CLAIMS_SQL = "DELETE FROM task_type_claims WHERE type = :type AND claimed_at_utc <= :since"
COUNT_CLAIMS_SQL = "SELECT count(*) FROM task_type_claims WHERE type = :type"
RECORD_CLAIM_SQL = "INSERT INTO task_type_claims (type, claimed_at_utc) VALUES (:type, :at)"


class FlowStatements:
    """The flow-control statements of one dialect, converted once."""

    def __init__(self, sql: ModuleType) -> None:
        self.sql = sql
        self.limited_types = sql.dbapi_sql(sql.LIMITED_TYPES_SQL)
        self.lock_type = sql.dbapi_sql(sql.LOCK_TYPE_SQL)
        self.count_leased = sql.dbapi_sql(COUNT_LEASED_SQL)
        self.prune_claims = sql.dbapi_sql(PRUNE_CLAIMS_SQL)
        self.count_claims = sql.dbapi_sql(COUNT_CLAIMS_SQL)
        self.record_claim = sql.dbapi_sql(RECORD_CLAIM_SQL)


def allowance(
    cursor: Any, statements: FlowStatements, task_type: str, wanted: int, now: datetime
) -> tuple[int, bool]:
    """How many tasks of a limited type this claim may lease now (0 if paused meanwhile), and
    whether the type has a rate (its claims are then recorded). Locks the type's row first
    (see the module's docstring)."""
    cursor.execute(statements.lock_type, {"type": task_type})
    row = cursor.fetchone()
    if row is None:  # paused, or the limits were removed since LIMITED_TYPES_SQL
        return 0, False
    max_running, rate_count, rate_per_seconds = row
    allowed = wanted
    if max_running is not None:
        cursor.execute(statements.count_leased, {"type": task_type})
        allowed = min(allowed, int(max_running) - int(cursor.fetchone()[0]))
    if rate_count is not None and allowed > 0:
        since = now - timedelta(seconds=float(rate_per_seconds))
        sql = statements.sql
        cursor.execute(statements.prune_claims, {"type": task_type, "since": sql.bind_time(since)})
        cursor.execute(statements.count_claims, {"type": task_type})
        allowed = min(allowed, int(rate_count) - int(cursor.fetchone()[0]))
    return max(0, allowed), rate_count is not None


def claim_limited(
    cursor: Any,
    statements: FlowStatements,
    request: ClaimRequest,
    now: datetime,
    wanted: int,
    run: Callable[[ClaimRequest], list[ClaimedTask]],
    limited: list[str] | None = None,
) -> list[ClaimedTask]:
    """Claim up to ``wanted`` tasks of the request's limited types; ``run`` runs the
    strategy's limited statement for a request of one type. ``limited``: the request's
    limited types when the caller read them already (LIMITED_TYPES_SQL's rows)."""
    sql = statements.sql
    if limited is None:
        cursor.execute(statements.limited_types, {"types": sql.encode_types(request.types)})
        limited = [row[0] for row in cursor.fetchall()]
    claimed: list[ClaimedTask] = []
    for task_type in limited:
        if wanted <= 0:
            break
        allowed, rated = allowance(cursor, statements, task_type, wanted, now)
        if allowed <= 0:
            continue
        one_type = ClaimRequest(
            request.worker_id, [task_type], request.capabilities, allowed, request.lease_seconds
        )
        got = run(one_type)
        if got and rated:
            at = sql.bind_time(now)
            cursor.executemany(statements.record_claim, [{"type": task_type, "at": at}] * len(got))
        claimed += got
        wanted -= len(got)
    return claimed
