"""PostgreSQL's SQL: the claim statements, one per strategy, and the hot path's statements.

Why they are shaped this way (the pattern River, Oban, GoodJob and pgqueuer use):

* A CTE picks ids ``... ORDER BY ... LIMIT :limit FOR UPDATE SKIP LOCKED``: concurrent workers
  skip rows another claim has locked instead of waiting for it, and never pick the same row.
* The CTE is ``MATERIALIZED``: an optimisation fence, so the planner cannot fold it into the
  UPDATE and lock or update more rows than LIMIT allows.
* ``UPDATE ... WHERE id = ANY(ARRAY(SELECT id FROM picked)) RETURNING`` claims the batch in
  the same statement. Not ``UPDATE ... FROM picked``: in the generic plan of a prepared
  statement (psycopg prepares after a few executions) LIMIT is a parameter, the planner
  guesses hundreds of picked rows, and it hash-joins them with a Seq Scan of task_queue.
  ``= ANY(ARRAY(...))`` is always a primary-key index lookup (tests/queue_core/test_explain.py).
* Each ORDER BY matches a partial index over queued rows, so a claim reads a few index entries
  whatever the size of the table.
* Capability matching (CONTRACT §5) must agree with ``queue_core.capabilities.matches``. jsonb
  ``=`` is JSON equality (1 = 1.0, key order ignored, true <> 1). ``@>`` is used only for a
  scalar requirement, where it means "equal, or an element at the top level of the worker's
  list". For lists and objects it is recursive containment, which is not the contract:
  ``[[1, 2]] @> [[1]]`` and ``{"a": [1, 2]} <@ {"a": [2, 1]}`` both hold. So list inclusion
  and object equality compare elements with ``=``.
* RETURNING gives rows in no particular order; the caller sorts them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson

from queue_core.clock import ensure_utc
from queue_core.dialects import guarded_sql
from queue_core.settings import PG_NOTIFY_CHANNEL
from queue_core.states import SchedulingStrategy

CAPABILITY_MATCH = """(
        t.compatibility = '{}'::jsonb
        OR NOT EXISTS (
            SELECT 1 FROM jsonb_each(t.compatibility) AS req
            WHERE NOT coalesce(CASE jsonb_typeof(req.value)
                -- the worker's list holds every element of the task's list
                WHEN 'array' THEN
                    jsonb_typeof(CAST(:capabilities AS jsonb) -> req.key) = 'array'
                    AND NOT EXISTS (
                        SELECT 1 FROM jsonb_array_elements(req.value) AS r
                        WHERE NOT EXISTS (
                            SELECT 1
                            FROM jsonb_array_elements(CAST(:capabilities AS jsonb) -> req.key) AS v
                            WHERE v = r))
                -- an equal object, or the worker's list holds an equal object
                WHEN 'object' THEN
                    (CAST(:capabilities AS jsonb) -> req.key) = req.value
                    OR (jsonb_typeof(CAST(:capabilities AS jsonb) -> req.key) = 'array'
                        AND EXISTS (
                            SELECT 1
                            FROM jsonb_array_elements(CAST(:capabilities AS jsonb) -> req.key) AS v
                            WHERE v = req.value))
                -- a scalar: @> is equality, or membership at the top level of a list
                ELSE (CAST(:capabilities AS jsonb) -> req.key) @> req.value
            END, false)
        )
    )"""

RETURNED_COLUMNS = """q.id, q.type, q.payload, q.priority, q.attempts, q.max_attempts,
    q.lease_token, q.timeout_seconds, q.run_after_utc, q.lease_until_utc, q.cancel_requested,
    q.wr_key"""

_CLAIM = """
WITH picked AS MATERIALIZED (
    SELECT t.id FROM task_queue AS t
    WHERE t.status = 'queued' AND t.pending_deps = 0
      AND t.run_after_utc <= :now{extra}
      AND t.type = ANY(CAST(:types AS text[])){free}
      AND {capability_match}
    ORDER BY {order}
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
)
UPDATE task_queue AS q
SET status = 'leased',
    attempts = q.attempts + 1,
    lease_token = q.lease_token + 1,
    locked_by = :worker_id,
    lease_until_utc = :lease_until,
    reserved_at_utc = :now,
    processing_started_utc = :now,
    updated_at_utc = :now
WHERE q.id = ANY(ARRAY(SELECT id FROM picked))
RETURNING {returned}
"""


# Flow control (CONTRACT §9, queue_core/dialects/flow.py). The common claim takes none of the
# types that have a task_types row (paused or limited): ARRAY(...) is an InitPlan, run once per
# statement, and on an empty table costs nothing, so types without a limit pay nothing. The
# limited claim serves one limited type at a time, after flow.py locked the type's row
# (FOR UPDATE: limited claims of one type run one after the other) and counted what it may take.
_FREE = "\n      AND t.type <> ALL(ARRAY(SELECT tt.type FROM task_types AS tt))"


def _claim(order: str, extra: str = "", free: str = _FREE) -> str:
    return _CLAIM.format(
        order=order,
        extra=extra,
        free=free,
        capability_match=CAPABILITY_MATCH,
        returned=RETURNED_COLUMNS,
    )


# Run in the claim's transaction just before the claim statement (SqlClaimer.claim).
#
# Why: the claim must walk the strategy's partial index in order and stop after :limit rows.
# The planner may instead pick another index (the (status, type) one that revision 0006 dropped,
# or a bitmap scan) and sort every
# queued row, and it does exactly when the queue is in trouble: while a transaction is held
# open (issue 11 F, ``python -m benchmarks.held_transaction``) vacuum cannot remove the entries
# of claimed tasks, the partial index fills with dead entries, and once autoanalyze has seen
# few live rows in many index pages, the ordered walk looks expensive. Measured: after the
# switch every claim sorted the whole backlog (2,000 rows and growing), claims got slower than
# the arrival rate, the backlog grew, and the queue did not recover after the transaction
# ended (throughput 200 -> 90 tasks/s, enqueue-to-claim p99 17 s). SQLite pins the index with
# INDEXED BY; PostgreSQL has no hints, so the claim's transaction takes sorting off the table:
# with sorts disabled (SET LOCAL: this transaction only) the only plan left without a
# penalty is the ordered walk of the strategy's index. The rest of a hot-path transaction is
# guarded updates by id and log inserts, which never sort.
#
# Sequential scans are taken off the table for the same reason: on a table loaded faster than
# autoanalyze follows (a bulk enqueue, then a drain), the planner believes task_queue is tiny
# and runs the UPDATE's ``id = ANY(...)`` as a Seq Scan of the whole table, once per claim
# (measured: 3,000 queued tasks, limit 5, 600 seq scans reading 1.8 M rows, ~620 rows read
# per task; with the setting, a primary-key lookup per claimed row).
CLAIM_SETUP_SQL: tuple[str, ...] = (
    "SELECT set_config('enable_sort', 'off', true),"
    " set_config('enable_incremental_sort', 'off', true),"
    " set_config('enable_seqscan', 'off', true)",
)


def _claims(free: str) -> dict[SchedulingStrategy, str]:
    return {
        # Oldest due first (ix_task_queue_due_fifo).
        SchedulingStrategy.FIFO: _claim("t.run_after_utc, t.id", "", free),
        # Newest due first (ix_task_queue_due_fifo, walked backwards).
        SchedulingStrategy.LIFO: _claim("t.run_after_utc DESC, t.id DESC", "", free),
        # Lowest priority value, then oldest due (ix_task_queue_due_priority).
        SchedulingStrategy.PRIORITY: _claim("t.priority, t.run_after_utc, t.id", "", free),
        # Smallest race key first (ix_task_queue_due_weighted); see weighted.py.
        SchedulingStrategy.WEIGHTED_RANDOM: _claim(
            "t.wr_key", "\n      AND t.wr_key IS NOT NULL", free
        ),
    }


CLAIM_SQL = _claims(_FREE)
CLAIM_LIMITED_SQL = _claims("")

# The worker's types that are limited and not paused: they go through the limited claim.
LIMITED_TYPES_SQL = """
SELECT type FROM task_types
WHERE NOT paused AND type = ANY(CAST(:types AS text[]))
ORDER BY type
"""

# CLAIM_SETUP_SQL and LIMITED_TYPES_SQL in one round trip, run before the claim statement:
# a claim that leaves slots free (an idle poll, a one-task claim) then needs no statement of its
# own to learn that none of the worker's types is limited (claim_limited's own read cost one
# more round trip per such claim, ~0.1 ms, whether or not flow control was in use). Reading
# the limited types before the common claim rather than after changes nothing: a type limited
# in between is skipped by both this round, and flow.allowance re-reads each limited type's row
# under its lock.
CLAIM_SETUP_LIMITED_TYPES_SQL: str | None = f"{CLAIM_SETUP_SQL[0]}, ARRAY({LIMITED_TYPES_SQL})"

# A limited type's limits, its row locked until the claim commits: the next claim of the type
# waits here, then counts what this one leased. Types are locked in name order (no deadlock).
LOCK_TYPE_SQL = """
SELECT max_running, rate_count, rate_per_seconds FROM task_types
WHERE type = :type AND NOT paused
FOR UPDATE
"""


PROMOTE_SELECT_SQL = """
SELECT id, priority FROM task_queue
WHERE status = 'queued' AND wr_key IS NULL AND run_after_utc <= :now
LIMIT :limit
FOR UPDATE SKIP LOCKED
"""

# Reading the clock FOR UPDATE serialises weighted_random claims with each other (and only
# them): the clock must advance in claim order for the race to stay exact.
READ_CLOCK_SQL = "SELECT vtime FROM task_queue_clock WHERE id = 1 FOR UPDATE"

ADVANCE_CLOCK_SQL = """
INSERT INTO task_queue_clock (id, vtime) VALUES (1, :vtime)
ON CONFLICT (id) DO UPDATE SET vtime = greatest(task_queue_clock.vtime, excluded.vtime)
"""


def encode_types(types: Sequence[str]) -> list[str]:
    """The worker's types as a list, bound as ``text[]``."""
    return list(types)


# Leased tasks whose lease ran out. SKIP LOCKED: two rescuers split the work instead of
# queueing behind each other, and a row a worker is completing right now is left alone.
EXPIRED_SELECT_SQL = """
SELECT id, lease_token, locked_by, attempts, max_attempts, cancel_requested
FROM task_queue
WHERE status = 'leased' AND lease_until_utc < :now
ORDER BY lease_until_utc
LIMIT :limit
FOR UPDATE SKIP LOCKED
"""

HELD_BY_SELECT_SQL = """
SELECT id, lease_token, locked_by, attempts, max_attempts, cancel_requested
FROM task_queue
WHERE status = 'leased' AND locked_by = :worker_id
LIMIT :limit
FOR UPDATE SKIP LOCKED
"""


# --- enqueue (the hot path's DBAPI connection, queue_core/dialects/connections.py) ---

# Enqueue: see sqlite_sql.py. payload is json (kept as written), compatibility jsonb.
ENQUEUE_COLUMNS = """type, priority, payload, compatibility, status, attempts, max_attempts,
    run_after_utc, idempotency_key, created_at_utc, updated_at_utc, cancel_requested,
    timeout_seconds, lease_token, wr_key, schedule, pending_deps"""

ENQUEUE_VALUES = """(:type, :priority, CAST(:payload AS json), CAST(:compatibility AS jsonb),
    'queued', 0, :max_attempts, :run_after_utc, :idempotency_key, :now, :now, false,
    :timeout_seconds, 0,
    (SELECT coalesce(max(vtime), 0.0) FROM task_queue_clock) + CAST(:wr_weight AS float8),
    :schedule, :pending_deps)"""

ENQUEUE_SQL = f"""
INSERT INTO task_queue ({ENQUEUE_COLUMNS})
VALUES {ENQUEUE_VALUES}
ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING id
"""

ENQUEUE_MANY_SQL = (
    f"INSERT INTO task_queue ({ENQUEUE_COLUMNS}) VALUES {ENQUEUE_VALUES} RETURNING id"
)


def insert_many(cursor: Any, statement: str, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Run ENQUEUE_MANY_SQL once per row in one pipeline; returns the new ids in row order."""
    cursor.executemany(statement, rows, returning=True)
    ids: list[int] = []
    while True:
        ids.append(cursor.fetchone()[0])
        if not cursor.nextset():
            return ids


# Enqueue in one statement, i.e. one round trip in autocommit: the row, its "enqueued" log row
# and, for a due task, the wake-up of listening workers (sent at commit). Data-modifying CTEs
# always run to completion; on a key conflict nothing is inserted and no row comes back.
ENQUEUE_LOGGED_SQL = f"""
WITH new AS (
    INSERT INTO task_queue ({ENQUEUE_COLUMNS})
    VALUES {ENQUEUE_VALUES}
    ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING id
), logged AS (
    INSERT INTO task_logs (task_id, at_utc, level, message, details)
    SELECT id, :now, 'INFO', 'enqueued', CAST(:details AS jsonb) FROM new
)
SELECT id, CASE WHEN :notify THEN pg_notify('{PG_NOTIFY_CHANNEL}', '') END FROM new
"""

# The same without the log row (PRISMQ_QUEUE_AUDIT=failures).
ENQUEUE_NOTIFY_SQL = f"""
WITH new AS (
    INSERT INTO task_queue ({ENQUEUE_COLUMNS})
    VALUES {ENQUEUE_VALUES}
    ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING id
)
SELECT id, CASE WHEN :notify THEN pg_notify('{PG_NOTIFY_CHANNEL}', '') END FROM new
"""


TASK_COLUMNS = """id, type, status, priority, attempts, max_attempts, payload, compatibility,
    idempotency_key, run_after_utc, created_at_utc, updated_at_utc, processing_started_utc,
    finished_at_utc, locked_by, lease_until_utc, cancel_requested, error_message, result,
    timeout_seconds, schedule"""

TASK_BY_KEY_SQL = f"SELECT {TASK_COLUMNS} FROM task_queue WHERE idempotency_key = :key"

SET_KEY_SQL = """
UPDATE task_queue SET wr_key = :wr_key WHERE id = :id AND status = 'queued' AND wr_key IS NULL
"""

# ":name" but not the "::" of a cast.
_NAMED_PARAMETER = re.compile(r"(?<![:\w]):(\w+)")


def dbapi_sql(sql: str) -> str:
    """The statement as psycopg takes it: ``:name`` becomes ``%(name)s``."""
    return _NAMED_PARAMETER.sub(r"%(\1)s", sql.replace("%", "%%"))


def begin_write(cursor: Any) -> None:
    """psycopg opens the transaction at the first statement."""


def bind_time(value: datetime) -> datetime:
    return value


def read_time(value: Any) -> datetime:
    return ensure_utc(value)


def bind_json(value: Any) -> str:
    return orjson.dumps(value).decode()


def read_json(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, (str, bytes)) else value


# --- guarded transitions: one statement per outcome kind for a whole batch ---
#
# The batch arrives as parallel arrays (one per column, NULL where a kind has no value) and
# ``unnest`` turns them into rows b. ``q.id = ANY(:ids)`` is there for the planner: it makes
# every plan, generic ones included, primary-key lookups of the batch's ids rather than a hash
# join against a scan of task_queue (as with the claim, tests/queue_core/test_explain.py). The
# SET clauses, shared with SQLite, are in guarded_sql.py.
#
# The status guard is written ``IS NOT DISTINCT FROM`` (the same test: status is never NULL)
# so that it does not prove ix_task_queue_lease_until's predicate (status = 'leased'). With
# ``= 'leased'`` the planner could use that partial index, and did during drains: its
# statistics say few rows are leased, so it read every entry of the index, live and dead (a
# finished task's entry stays until vacuum), as a bitmap and filtered the batch's ids out of
# them: ~490 index entries read per task drained, 2.3 ms instead of 0.3 ms per batch of 10
# (tests/queue_core/test_explain.py).
_GUARDED = """
UPDATE task_queue AS q
SET {assignments}
FROM unnest(CAST(:ids AS bigint[]), CAST(:workers AS text[]), CAST(:tokens AS bigint[]),
            CAST(:messages AS text[]), CAST(:results AS text[]), CAST(:ats AS timestamptz[]))
     AS b(b_id, b_worker, b_token, b_message, b_result, b_at)
WHERE q.id = ANY(CAST(:ids AS bigint[]))
  AND q.id = b.b_id
  AND q.status IS NOT DISTINCT FROM 'leased'
  AND q.locked_by = b.b_worker
  AND q.lease_token = b.b_token{guard}
RETURNING q.id, q.status, q.cancel_requested, q.attempts, q.max_attempts, q.has_dependents
"""

GUARDED_SQL = {
    kind: _GUARDED.format(
        assignments=assignments.format(result="CAST(b.b_result AS json)"), guard=guard
    )
    for kind, (assignments, guard) in guarded_sql.KINDS.items()
}


def bind_guarded(rows: Sequence[Sequence[Any]]) -> dict[str, Any]:
    """(id, worker_id, lease_token, message, result JSON text, at) rows as parallel arrays."""
    ids, workers, tokens, messages, results, ats = (
        list(column) for column in zip(*rows, strict=True)
    )
    return {
        "ids": ids,
        "workers": workers,
        "tokens": tokens,
        "messages": messages,
        "results": results,
        "ats": ats,
    }


# Every task_logs row of a transaction in one INSERT: parallel arrays again.
INSERT_LOGS_SQL = """
INSERT INTO task_logs (task_id, at_utc, level, message, details)
SELECT * FROM unnest(CAST(:task_ids AS bigint[]), CAST(:ats AS timestamptz[]),
                     CAST(:levels AS text[]), CAST(:messages AS text[]),
                     CAST(:details AS jsonb[]))
"""


def bind_logs(rows: Sequence[tuple[int, Any, str, str, str | None]]) -> dict[str, Any]:
    """(task_id, at, level, message, details JSON text) rows as parallel arrays."""
    task_ids, ats, levels, messages, details = (list(column) for column in zip(*rows, strict=True))
    return {
        "task_ids": task_ids,
        "ats": ats,
        "levels": levels,
        "messages": messages,
        "details": details,
    }


HEARTBEAT_SQL = """
UPDATE workers SET heartbeat_utc = :now, stopped_at_utc = NULL WHERE worker_id = :worker_id
"""
