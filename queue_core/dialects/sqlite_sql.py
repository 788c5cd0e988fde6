"""SQLite's SQL: the claim statements, one per strategy, and the hot path's statements.

Why they are shaped this way:

* SQLite has one writer at a time and the caller runs these under ``BEGIN IMMEDIATE``, so the
  inner SELECT and the UPDATE see the same rows: no SKIP LOCKED is needed, and no two workers
  can pick the same task. ``UPDATE ... WHERE id IN (SELECT ... LIMIT :limit) RETURNING`` is one
  atomic statement that claims a whole batch (RETURNING needs SQLite 3.35; ``UPDATE ... LIMIT``
  is a compile-time option Windows builds may lack, so it is not used).
* ``INDEXED BY`` pins the partial index that holds the strategy's order, so the planner cannot
  trade it for another index (or a scan) plus a sort of every queued row. The claim then
  reads index entries in order and stops after ``:limit`` matches.
* Types arrive as one JSON array (``json_each``) so the statement text, and SQLAlchemy's
  compiled cache entry, is the same whatever the number of types.
* Capability matching (CONTRACT §5) runs in SQL with JSON1 and must agree with the reference
  ``queue_core.capabilities.matches`` (JSON equality: true is not 1, 1 is 1.0, objects equal
  whatever their key order). Tasks without requirements are stored as the exact text ``{}``
  and skip the JSON work.
* RETURNING gives rows in no particular order; the caller sorts them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson

from queue_core.clock import from_micros, to_micros
from queue_core.dialects import guarded_sql
from queue_core.states import SchedulingStrategy


def _same_scalar(a: str, b: str) -> str:
    # Same JSON scalar: equal atoms of the same JSON type, integers and reals being one type.
    # Also right for two containers' nodes in json_tree: their atoms are both NULL.
    return (
        f"({a}.atom IS {b}.atom AND ({a}.type = {b}.type"
        f" OR ({a}.type IN ('integer', 'real') AND {b}.type IN ('integer', 'real'))))"
    )


def _list_of(row: str) -> str:
    # A json_each row's value as JSON text when it is a list, else NULL: json_each/json_tree
    # of NULL is empty, while SQLite may evaluate a subquery over a scalar's bare text (which
    # is malformed JSON) before the type test that guards it.
    return f"CASE WHEN {row}.type = 'array' THEN {row}.value END"


def _container_of(row: str) -> str:
    return f"CASE WHEN {row}.type IN ('array', 'object') THEN {row}.value END"


def _same_tree(a: str, b: str) -> str:
    # Two JSON containers (texts) are equal when json_tree gives the same nodes at the same
    # paths: as many nodes in each, and each node of a has its twin in b. Paths are unique in a
    # tree, so counting the matched pairs is enough. Object key order does not matter (the path
    # names the key); list order does (the path holds the index). Comparing json() texts would
    # get key order, 1 vs 1.0 and nested containers wrong. Counts over joins, not nested NOT
    # EXISTS, keep the statement within SQLite's parser depth.
    return f"""(
        (SELECT count(*) FROM json_tree({a}) AS ta JOIN json_tree({b}) AS tb
         ON tb.fullkey = ta.fullkey AND {_same_scalar("ta", "tb")})
        = (SELECT count(*) FROM json_tree({a}))
        AND (SELECT count(*) FROM json_tree({a})) = (SELECT count(*) FROM json_tree({b})))"""


def _same_value(a: str, b: str) -> str:
    # JSON equality of two json_each rows: scalars by atom, containers by tree.
    return f"""(
        ({a}.type NOT IN ('array', 'object') AND {b}.type NOT IN ('array', 'object')
         AND {_same_scalar(a, b)})
        OR ({a}.type IN ('array', 'object') AND {a}.type = {b}.type
            AND {_same_tree(_container_of(a), _container_of(b))}))"""


def _requirement_met(req: str, cap: str) -> str:
    return f"""CASE
            -- the worker's list holds every element of the task's list
            WHEN {req}.type = 'array' THEN
                {cap}.type = 'array'
                AND (SELECT count(DISTINCT r.key) FROM json_each({_list_of(req)}) AS r
                     JOIN json_each({_list_of(cap)}) AS v ON {_same_value("v", "r")})
                    = json_array_length({req}.value)
            -- equal values, or the worker's list holds the task's value
            ELSE {_same_value(cap, req)}
                OR ({cap}.type = 'array'
                    AND EXISTS (SELECT 1 FROM json_each({_list_of(cap)}) AS v
                                WHERE {_same_value("v", req)}))
        END"""


# Every requirement key has a worker key that meets it (keys are unique, so count them).
CAPABILITY_MATCH = f"""(
        t.compatibility = '{{}}'
        OR (SELECT count(*) FROM json_each(t.compatibility) AS req
            JOIN json_each(:capabilities) AS cap ON cap.key = req.key
            WHERE {_requirement_met("req", "cap")})
           = (SELECT count(*) FROM json_each(t.compatibility))
    )"""

RETURNED_COLUMNS = """id, type, payload, priority, attempts, max_attempts, lease_token,
    timeout_seconds, run_after_utc, lease_until_utc, cancel_requested, wr_key"""

_CLAIM = """
UPDATE task_queue
SET status = 'leased',
    attempts = attempts + 1,
    lease_token = lease_token + 1,
    locked_by = :worker_id,
    lease_until_utc = :lease_until,
    reserved_at_utc = :now,
    processing_started_utc = :now,
    updated_at_utc = :now
WHERE id IN (
    SELECT t.id FROM task_queue AS t INDEXED BY {index}
    WHERE t.status = 'queued' AND t.pending_deps = 0
      AND t.run_after_utc <= :now{extra}
      AND t.type IN ({types})
      AND {capability_match}
    ORDER BY {order}
    LIMIT :limit
)
RETURNING {returned}
"""


# Flow control (CONTRACT §9, queue_core/dialects/flow.py). The common claim takes none of the
# types that have a task_types row (paused or limited): the subquery runs once per statement,
# and on an empty table costs nothing, so types without a limit pay nothing for the feature.
# The limited claim serves one limited type at a time, after flow.py counted what it may take
# under the write lock BEGIN IMMEDIATE already holds: no other claim can run meanwhile.
_FREE_TYPES = "SELECT value FROM json_each(:types) WHERE value NOT IN (SELECT type FROM task_types)"
_ANY_TYPE = "SELECT value FROM json_each(:types)"


def _claim(index: str, order: str, extra: str = "", types: str = _FREE_TYPES) -> str:
    return _CLAIM.format(
        index=index,
        order=order,
        extra=extra,
        types=types,
        capability_match=CAPABILITY_MATCH,
        returned=RETURNED_COLUMNS,
    )


# Nothing to run before a claim: INDEXED BY pins each claim's index in the statement itself
# (postgresql_sql.CLAIM_SETUP_SQL says why PostgreSQL needs a setup statement instead).
CLAIM_SETUP_SQL: tuple[str, ...] = ()


def _claims(types: str) -> dict[SchedulingStrategy, str]:
    return {
        # Oldest due first: due time, then insertion order.
        SchedulingStrategy.FIFO: _claim(
            "ix_task_queue_due_fifo", "t.run_after_utc, t.id", "", types
        ),
        # Newest due first: the same index walked backwards from :now.
        SchedulingStrategy.LIFO: _claim(
            "ix_task_queue_due_fifo", "t.run_after_utc DESC, t.id DESC", "", types
        ),
        # Lowest priority value, then oldest due.
        SchedulingStrategy.PRIORITY: _claim(
            "ix_task_queue_due_priority", "t.priority, t.run_after_utc, t.id", "", types
        ),
        # Smallest race key first; see queue_core/dialects/weighted.py for why this is exact.
        SchedulingStrategy.WEIGHTED_RANDOM: _claim(
            "ix_task_queue_due_weighted", "t.wr_key", "\n      AND t.wr_key IS NOT NULL", types
        ),
    }


CLAIM_SQL = _claims(_FREE_TYPES)
CLAIM_LIMITED_SQL = _claims(_ANY_TYPE)

# The worker's types that are limited and not paused: they go through the limited claim.
LIMITED_TYPES_SQL = """
SELECT type FROM task_types
WHERE NOT paused AND type IN (SELECT value FROM json_each(:types))
ORDER BY type
"""

# SQLite reads LIMITED_TYPES_SQL in process, only when a claim leaves slots free: there is no
# round trip to save (postgresql_sql.CLAIM_SETUP_LIMITED_TYPES_SQL).
CLAIM_SETUP_LIMITED_TYPES_SQL: str | None = None

# A limited type's limits. BEGIN IMMEDIATE already serialises every claim.
LOCK_TYPE_SQL = """
SELECT max_running, rate_count, rate_per_seconds FROM task_types
WHERE type = :type AND NOT paused
"""


# Due tasks that have no race key yet (delayed, backed off, released, retried).
PROMOTE_SELECT_SQL = """
SELECT id, priority FROM task_queue INDEXED BY ix_task_queue_unkeyed
WHERE status = 'queued' AND wr_key IS NULL AND run_after_utc <= :now
LIMIT :limit
"""

READ_CLOCK_SQL = "SELECT vtime FROM task_queue_clock WHERE id = 1"

ADVANCE_CLOCK_SQL = """
INSERT INTO task_queue_clock (id, vtime) VALUES (1, :vtime)
ON CONFLICT (id) DO UPDATE SET vtime = max(vtime, excluded.vtime)
"""


def encode_types(types: Sequence[str]) -> str:
    """The worker's types as one JSON array, read by ``json_each(:types)``."""
    return orjson.dumps(list(types)).decode()


# Leased tasks whose lease ran out; the caller's BEGIN IMMEDIATE already excludes everyone.
EXPIRED_SELECT_SQL = """
SELECT id, lease_token, locked_by, attempts, max_attempts, cancel_requested
FROM task_queue INDEXED BY ix_task_queue_lease_until
WHERE status = 'leased' AND lease_until_utc < :now
ORDER BY lease_until_utc
LIMIT :limit
"""

HELD_BY_SELECT_SQL = """
SELECT id, lease_token, locked_by, attempts, max_attempts, cancel_requested
FROM task_queue INDEXED BY ix_task_queue_lease_until
WHERE status = 'leased' AND locked_by = :worker_id
LIMIT :limit
"""


# --- enqueue (the hot path's DBAPI connection, queue_core/dialects/connections.py) ---

# One task_logs row (benchmarks/schema_floor.py; the queue writes INSERT_LOGS_SQL below).
INSERT_LOG_SQL = """
INSERT INTO task_logs (task_id, at_utc, level, message, details)
VALUES (:task_id, :at_utc, :level, :message, :details)
"""

# Enqueue: one row, or nothing when the idempotency key exists already (the caller then reads
# the existing task). A due task joins the weighted_random race at once: key = virtual clock
# + its weight; :wr_weight is NULL for a delayed task, which makes the key NULL.
ENQUEUE_COLUMNS = """type, priority, payload, compatibility, status, attempts, max_attempts,
    run_after_utc, idempotency_key, created_at_utc, updated_at_utc, cancel_requested,
    timeout_seconds, lease_token, wr_key, schedule, pending_deps"""

ENQUEUE_VALUES = """(:type, :priority, :payload, :compatibility, 'queued', 0, :max_attempts,
    :run_after_utc, :idempotency_key, :now, :now, false, :timeout_seconds, 0,
    (SELECT coalesce(max(vtime), 0.0) FROM task_queue_clock) + :wr_weight, :schedule,
    :pending_deps)"""

ENQUEUE_SQL = f"""
INSERT INTO task_queue ({ENQUEUE_COLUMNS})
VALUES {ENQUEUE_VALUES}
ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING id
"""

ENQUEUE_MANY_SQL = f"INSERT INTO task_queue ({ENQUEUE_COLUMNS}) VALUES {ENQUEUE_VALUES}"


def insert_many(cursor: Any, statement: str, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Run ENQUEUE_MANY_SQL once per row (executemany: one prepared statement, a C loop);
    returns the new ids in row order.

    The ids are consecutive: the caller holds the write lock (BEGIN IMMEDIATE), so no one else
    inserts meanwhile, and AUTOINCREMENT gives each row the largest id so far plus one.
    A multi-row VALUES list would return the ids directly but is several times slower here:
    SQLite plans it as a compound SELECT.
    """
    cursor.executemany(statement, rows)
    if cursor.rowcount != len(rows):
        raise RuntimeError(f"inserted {cursor.rowcount} of {len(rows)} rows")
    last = cursor.execute("SELECT last_insert_rowid()").fetchone()[0]
    return list(range(last - len(rows) + 1, last + 1))


TASK_COLUMNS = """id, type, status, priority, attempts, max_attempts, payload, compatibility,
    idempotency_key, run_after_utc, created_at_utc, updated_at_utc, processing_started_utc,
    finished_at_utc, locked_by, lease_until_utc, cancel_requested, error_message, result,
    timeout_seconds, schedule"""

TASK_BY_KEY_SQL = f"SELECT {TASK_COLUMNS} FROM task_queue WHERE idempotency_key = :key"

KEY_TAKEN_SQL = "SELECT 1 FROM task_queue WHERE idempotency_key = :key"

SET_KEY_SQL = """
UPDATE task_queue SET wr_key = :wr_key WHERE id = :id AND status = 'queued' AND wr_key IS NULL
"""


def dbapi_sql(sql: str) -> str:
    """The statement as the sqlite3 module takes it: it reads ``:name`` parameters itself."""
    return sql


def begin_write(cursor: Any) -> None:
    # The write lock up front: a deferred transaction that later needs it fails at once.
    cursor.execute("BEGIN IMMEDIATE")


def bind_time(value: datetime) -> int:
    return to_micros(value)


def read_time(value: Any) -> datetime:
    return from_micros(int(value))


def bind_json(value: Any) -> str:
    return orjson.dumps(value).decode()


def read_json(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, (str, bytes)) else value


# --- guarded transitions: one statement per outcome kind for a whole batch ---
#
# The batch arrives as one JSON array of rows ``[id, worker, token, message, result, at]``
# (json_each), so the statement text is the same whatever the batch size. The plan scans the
# batch and looks each task up by its primary key (tests/queue_core/test_explain.py). A result
# travels as JSON text inside the array and json_extract gives that text back as it is. SQLite's
# RETURNING names the target's columns unqualified. The SET clauses, shared with PostgreSQL,
# are in guarded_sql.py.
_GUARDED = """
UPDATE task_queue AS q
SET {assignments}
FROM (SELECT json_extract(value, '$[0]') AS b_id, json_extract(value, '$[1]') AS b_worker,
             json_extract(value, '$[2]') AS b_token, json_extract(value, '$[3]') AS b_message,
             json_extract(value, '$[4]') AS b_result, json_extract(value, '$[5]') AS b_at
      FROM json_each(:batch)) AS b
WHERE q.id = b.b_id
  AND q.status = 'leased'
  AND q.locked_by = b.b_worker
  AND q.lease_token = b.b_token{guard}
RETURNING id, status, cancel_requested, attempts, max_attempts, has_dependents
"""

GUARDED_SQL = {
    kind: _GUARDED.format(assignments=assignments.format(result="b.b_result"), guard=guard)
    for kind, (assignments, guard) in guarded_sql.KINDS.items()
}


def bind_guarded(rows: Sequence[Sequence[Any]]) -> dict[str, Any]:
    """(id, worker_id, lease_token, message, result JSON text, at) rows as one JSON array;
    ``at`` is already bound (integer microseconds)."""
    return {"batch": orjson.dumps([list(row) for row in rows]).decode()}


# Every task_logs row of a transaction in one INSERT, from one JSON array of rows
# ``[task_id, at, level, message, details JSON text]`` (kept in the array's order).
INSERT_LOGS_SQL = """
INSERT INTO task_logs (task_id, at_utc, level, message, details)
SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'),
       json_extract(value, '$[3]'), json_extract(value, '$[4]')
FROM json_each(:rows)
"""


def bind_logs(rows: Sequence[tuple[int, Any, str, str, str | None]]) -> dict[str, Any]:
    return {"rows": orjson.dumps([list(row) for row in rows]).decode()}


HEARTBEAT_SQL = """
UPDATE workers SET heartbeat_utc = :now, stopped_at_utc = NULL WHERE worker_id = :worker_id
"""
