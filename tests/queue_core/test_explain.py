"""Every claim statement, and the promotion and recovery selects, is served by an index.

SQLite: ``EXPLAIN QUERY PLAN`` shows no scan of ``task_queue`` without an index and no temporary
B-tree for ORDER BY. PostgreSQL: after loading ~20,000 rows and ANALYZE, ``EXPLAIN`` shows no
``Seq Scan on task_queue``, both for the custom plan (parameters known) and for the generic plan
a prepared statement falls back to (psycopg prepares a statement after a few executions).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from sqlalchemy import text

from queue_core.clock import utcnow
from queue_core.database import Database
from queue_core.dialects import postgresql_sql, sqlite_sql
from queue_core.repositories import LeaseRepository, TaskRepository
from queue_core.repositories.leases import NEXT_DUE
from queue_core.schemas import TaskCreate
from queue_core.states import SchedulingStrategy

ROWS = 20_000
STATEMENTS: dict[str, Any] = {
    **{f"claim {s.value}": s for s in SchedulingStrategy},
    # The claim of a limited type (dialects/flow.py): the same seek, on one type.
    **{f"claim limited {s.value}": ("CLAIM_LIMITED_SQL", s) for s in SchedulingStrategy},
    "promote": "PROMOTE_SELECT_SQL",
    "expired": "EXPIRED_SELECT_SQL",
    "held_by": "HELD_BY_SELECT_SQL",
}


def _sql(module: Any, name: str) -> str:
    which = STATEMENTS[name]
    if isinstance(which, SchedulingStrategy):
        return str(module.CLAIM_SQL[which])
    if isinstance(which, tuple):
        return str(getattr(module, which[0])[which[1]])
    return str(getattr(module, which))


def _load(db: Database) -> None:
    """~20,000 rows: most queued and due, some delayed, some leased, the rest finished; one
    queued task in seven waits for a dependency, and type c has a limit."""
    now = utcnow()
    if db.dialect.name == "sqlite":
        now_us = int(now.timestamp() * 1_000_000)
        fill = f"""
        WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < {ROWS})
        INSERT INTO task_queue (type, priority, payload, compatibility, status, attempts,
            run_after_utc, lease_until_utc, locked_by, wr_key, created_at_utc, updated_at_utc,
            pending_deps)
        SELECT CASE n % 3 WHEN 0 THEN 'a' WHEN 1 THEN 'b' ELSE 'c' END,
            1 + n % 1000, '{{}}', CASE WHEN n % 10 = 0 THEN '{{"gpu": true}}' ELSE '{{}}' END,
            CASE WHEN n % 20 = 1 THEN 'leased' WHEN n % 20 = 2 THEN 'completed'
                 ELSE 'queued' END,
            CASE WHEN n % 20 = 1 THEN 1 ELSE 0 END,
            CASE WHEN n % 20 = 3 THEN {now_us} + 3600000000 ELSE {now_us} - n END,
            CASE WHEN n % 20 = 1 THEN {now_us} + (n % 2) * 60000000 - 30000000 END,
            CASE WHEN n % 20 = 1 THEN 'w' || (n % 5) END,
            CASE WHEN n % 20 = 3 THEN NULL ELSE n * 0.5 END,
            {now_us}, {now_us},
            CASE WHEN n % 7 = 0 AND n % 20 > 2 THEN 1 ELSE 0 END
        FROM g
        """
    else:
        fill = f"""
        INSERT INTO task_queue (type, priority, payload, compatibility, status, attempts,
            run_after_utc, lease_until_utc, locked_by, wr_key, created_at_utc, updated_at_utc,
            pending_deps)
        SELECT CASE n % 3 WHEN 0 THEN 'a' WHEN 1 THEN 'b' ELSE 'c' END,
            1 + n % 1000, '{{}}',
            (CASE WHEN n % 10 = 0 THEN '{{"gpu": true}}' ELSE '{{}}' END)::jsonb,
            CASE WHEN n % 20 = 1 THEN 'leased' WHEN n % 20 = 2 THEN 'completed'
                 ELSE 'queued' END,
            CASE WHEN n % 20 = 1 THEN 1 ELSE 0 END,
            CASE WHEN n % 20 = 3 THEN now() + interval '1 hour'
                 ELSE now() - n * interval '1 microsecond' END,
            CASE WHEN n % 20 = 1 THEN now() + (n % 2) * interval '60 s' - interval '30 s' END,
            CASE WHEN n % 20 = 1 THEN 'w' || (n % 5) END,
            CASE WHEN n % 20 = 3 THEN NULL ELSE n * 0.5 END,
            now(), now(),
            CASE WHEN n % 7 = 0 AND n % 20 > 2 THEN 1 ELSE 0 END
        FROM generate_series(1, {ROWS}) AS n
        """
    with db.write() as conn:
        conn.execute(text(fill))
        conn.execute(text("INSERT INTO task_types (type, max_running) VALUES ('c', 2)"))
        conn.execute(text("ANALYZE task_queue" if db.dialect.name == "postgresql" else "ANALYZE"))


def _params(module: Any) -> dict[str, Any]:
    now = utcnow()
    return {
        "now": module.bind_time(now),
        "lease_until": module.bind_time(now + timedelta(seconds=30)),
        "worker_id": "w1",
        "types": module.encode_types(["a", "b"]),
        "capabilities": '{"gpu": true, "region": ["us", "eu"]}',
        "limit": 10,
    }


def _sqlite_problems(plan_rows: list[Any]) -> list[str]:
    details = [row[3] for row in plan_rows]
    problems = [
        # A scan of task_queue (alias t) is fine only through an index: a range walk.
        d
        for d in details
        if (re.match(r"SCAN (task_queue|t)\b", d) and "INDEX" not in d)
        or "TEMP B-TREE FOR ORDER BY" in d
    ]
    if not any(re.search(r"(SCAN|SEARCH) (task_queue|t) USING", d) for d in details):
        problems.append("no index access to task_queue at all")
    return problems


def test_sqlite_plans_use_an_index(db: Database) -> None:
    if db.dialect.name != "sqlite":
        pytest.skip("SQLite plans")
    _load(db)
    raw = db.engine.raw_connection()
    try:
        plans = {
            name: raw.driver_connection.execute(
                "EXPLAIN QUERY PLAN " + _sql(sqlite_sql, name), _params(sqlite_sql)
            ).fetchall()
            for name in STATEMENTS
        }
    finally:
        raw.close()
    bad = {name: _sqlite_problems(rows) for name, rows in plans.items() if _sqlite_problems(rows)}
    assert not bad, "\n".join(
        f"{name}: {problems}\n" + "\n".join(row[3] for row in plans[name])
        for name, problems in bad.items()
    )


PG_PARAMETER_TYPES = {
    "now": "timestamptz",
    "lease_until": "timestamptz",
    "worker_id": "text",
    "types": "text[]",
    "capabilities": "text",
    "limit": "bigint",
}


def _explain_pg(db: Database, sql: str, params: dict[str, Any]) -> str:
    raw = db.engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("EXPLAIN " + postgresql_sql.dbapi_sql(sql), params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
        raw.rollback()
        return plan
    finally:
        raw.close()


def _explain_pg_generic(db: Database, sql: str, params: dict[str, Any]) -> str:
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    prepared = re.sub(r"(?<![:\w]):(\w+)", number, sql)
    types = ", ".join(PG_PARAMETER_TYPES[name] for name in names)
    raw = db.engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("SET plan_cache_mode = force_generic_plan")
        cursor.execute(f"PREPARE claim_plan ({types}) AS {prepared}")
        placeholders = ", ".join(f"%s::{PG_PARAMETER_TYPES[name]}" for name in names)
        # EXPLAIN EXECUTE is a utility statement: its arguments must be literals, bound
        # client-side.
        literal = psycopg.ClientCursor(raw.driver_connection)
        literal.execute(
            f"EXPLAIN EXECUTE claim_plan({placeholders})", [params[name] for name in names]
        )
        cursor = literal
        plan = "\n".join(row[0] for row in cursor.fetchall())
        raw.rollback()
        # Prepared statements outlive transactions, and this connection goes back to the pool.
        raw.cursor().execute("DEALLOCATE claim_plan")
        raw.commit()
        return plan
    finally:
        raw.close()


def test_postgresql_plans_use_an_index(db: Database) -> None:
    if db.dialect.name != "postgresql":
        pytest.skip("PostgreSQL plans")
    _load(db)
    params = _params(postgresql_sql)
    bad = {}
    for name in STATEMENTS:
        sql = _sql(postgresql_sql, name)
        for kind, plan in (
            ("custom", _explain_pg(db, sql, params)),
            ("generic", _explain_pg_generic(db, sql, params)),
        ):
            indexed = re.search(r"Index (Only )?Scan (Backward )?using \w+ on task_queue", plan)
            if "Seq Scan on task_queue" in plan or not (indexed or "Bitmap Index Scan" in plan):
                bad[f"{name} ({kind} plan)"] = plan
    assert not bad, "\n\n".join(f"{name}:\n{plan}" for name, plan in bad.items())


# The index each strategy's claim must walk in order (postgresql_sql.CLAIM_SQL).
CLAIM_INDEX = {
    SchedulingStrategy.FIFO: "ix_task_queue_due_fifo",
    SchedulingStrategy.LIFO: "ix_task_queue_due_fifo",
    SchedulingStrategy.PRIORITY: "ix_task_queue_due_priority",
    SchedulingStrategy.WEIGHTED_RANDOM: "ix_task_queue_due_weighted",
}


@pytest.fixture
def lure_index(db: Database) -> Iterator[None]:
    """Revision 0006 dropped the (status, type) index that lured the planner; an index like it
    (an operator's, or a future one) must not be able to do it again."""
    with db.write() as conn:
        conn.execute(text("CREATE INDEX ix_lure_status_type ON task_queue (status, type)"))
    try:
        yield
    finally:
        with db.write() as conn:
            conn.execute(text("DROP INDEX ix_lure_status_type"))


def test_postgresql_claim_walks_its_index_when_the_statistics_say_the_queue_is_empty(
    db: Database, lure_index: None
) -> None:
    """Issue 11 F: the state a held-open transaction leaves. The queued partial indexes are
    full of dead entries (claimed tasks vacuum could not remove), autoanalyze last saw almost
    no queued row, and then a backlog built up. The planner then prefers
    ix_task_queue_status_type and a sort of every queued row (the whole backlog, per claim)
    over the ordered walk; CLAIM_SETUP_SQL, run in the claim's transaction, must keep it on
    the strategy's index."""
    if db.dialect.name != "postgresql":
        pytest.skip("PostgreSQL plans")
    fill = """
        INSERT INTO task_queue (type, payload, compatibility, status, run_after_utc, wr_key,
            created_at_utc, updated_at_utc)
        SELECT 'a', '{}', '{}'::jsonb, 'queued', now() - interval '1 hour' + n * interval '1 ms',
            n, now(), now()
        FROM generate_series(1, :rows) AS n
    """
    with db.write() as conn:
        conn.execute(text(fill), {"rows": 20_000})
        # claimed and finished: dead entries in every queued partial index; 4 rows stay queued
        conn.execute(text("UPDATE task_queue SET status = 'completed' WHERE id % 5000 <> 0"))
    with db.write() as conn:
        conn.execute(text("ANALYZE task_queue"))
    with db.write() as conn:
        conn.execute(text(fill), {"rows": 2_000})  # the backlog the statistics have not seen
    params = {**_params(postgresql_sql), "types": ["a"], "capabilities": "{}", "limit": 1}
    bad = {}
    flipped_without_setup = []
    for strategy, index in CLAIM_INDEX.items():
        sql = postgresql_sql.dbapi_sql(postgresql_sql.CLAIM_SQL[strategy])
        for setup in (False, True):
            raw = db.engine.raw_connection()
            try:
                cursor = raw.cursor()
                if setup:
                    for statement in postgresql_sql.CLAIM_SETUP_SQL:
                        cursor.execute(statement)
                cursor.execute("EXPLAIN " + sql, params)
                plan = "\n".join(row[0] for row in cursor.fetchall())
                raw.rollback()
            finally:
                raw.close()
            walks = re.search(rf"Index Scan (Backward )?using {index} on task_queue t\b", plan)
            ok = walks is not None and "Sort" not in plan
            if setup and not ok:
                bad[strategy.value] = plan
            if not setup and not ok:
                flipped_without_setup.append(strategy.value)
    assert not bad, "\n\n".join(f"{name}:\n{plan}" for name, plan in bad.items())
    # The state really is the one that misleads the planner (else this test proves nothing).
    assert flipped_without_setup, "the planner kept the ordered walk even without the setup"


# --- the index set is as lean as the plans allow (issue 11 D) ---

# Indexes on task_queue that serve no claim or recovery plan, and what they are for instead.
# A new index must either show up in a claim/recovery plan below or be added here with the
# test that proves its use.
LISTING_INDEXES = {
    "uq_task_queue_idempotency_key": "uniqueness of idempotency keys (enqueue's ON CONFLICT)",
    "ix_task_queue_failed": "the dead-letter list (test_dashboard_repository.py)",
    "ix_task_queue_finished": "retention purge and the dashboard's throughput",
    "ix_task_queue_queued_type": "live queued counts per type (test_dashboard_repository.py)",
    "ix_task_queue_finished_status_type": "finished counts in stats (test_stats_counts.py)",
}


def _task_queue_indexes(db: Database) -> set[str]:
    from sqlalchemy import inspect

    with db.engine.connect() as conn:
        return {str(index["name"]) for index in inspect(conn).get_indexes("task_queue")}


def _plan_texts(db: Database) -> dict[str, str]:
    """Every claim and recovery statement's plan (PostgreSQL: custom and generic)."""
    if db.dialect.name == "sqlite":
        raw = db.engine.raw_connection()
        try:
            return {
                name: "\n".join(
                    row[3]
                    for row in raw.driver_connection.execute(
                        "EXPLAIN QUERY PLAN " + _sql(sqlite_sql, name), _params(sqlite_sql)
                    ).fetchall()
                )
                for name in STATEMENTS
            }
        finally:
            raw.close()
    params = _params(postgresql_sql)
    plans = {}
    for name in STATEMENTS:
        sql = _sql(postgresql_sql, name)
        plans[f"{name} (custom)"] = _explain_pg(db, sql, params)
        plans[f"{name} (generic)"] = _explain_pg_generic(db, sql, params)
    return plans


def test_every_task_queue_index_serves_a_claim_or_recovery_plan(db: Database) -> None:
    _load(db)
    indexes = _task_queue_indexes(db)
    plans = _plan_texts(db)
    used = {index for index in indexes if any(index in plan for plan in plans.values())}
    unused = indexes - used - set(LISTING_INDEXES)
    assert not unused, f"indexes no claim or recovery plan uses: {sorted(unused)}"
    assert used >= {
        "ix_task_queue_due_fifo",
        "ix_task_queue_due_priority",
        "ix_task_queue_due_weighted",
        "ix_task_queue_unkeyed",
        "ix_task_queue_lease_until",
    }, plans
    assert "ix_task_queue_status_type" not in indexes  # dropped by revision 0006


def _guarded_plans(db: Database) -> dict[str, str]:
    now = utcnow()
    if db.dialect.name == "sqlite":
        raw = db.engine.raw_connection()
        try:
            return {
                kind: "\n".join(
                    row[3]
                    for row in raw.driver_connection.execute(
                        "EXPLAIN QUERY PLAN " + sql,
                        {
                            **sqlite_sql.bind_guarded([(1, "w", 1, None, None, None)]),
                            "now": sqlite_sql.bind_time(now),
                            "lease_until": sqlite_sql.bind_time(now),
                            "cancelled_message": "x",
                        },
                    ).fetchall()
                )
                for kind, sql in sqlite_sql.GUARDED_SQL.items()
            }
        finally:
            raw.close()
    plans = {}
    for kind, sql in postgresql_sql.GUARDED_SQL.items():
        params = {
            **postgresql_sql.bind_guarded([(1, "w", 1, None, None, None)]),
            "now": now,
            "lease_until": now,
            "cancelled_message": "x",
        }
        plans[kind] = _explain_pg(db, sql, params)
    return plans


def test_guarded_batches_look_tasks_up_by_primary_key(db: Database) -> None:
    """One statement per outcome kind per batch: each task is an index lookup (the primary key,
    by ``id = ANY(:ids)`` on PostgreSQL), never a scan of task_queue."""
    _load(db)
    bad = {}
    for kind, plan in _guarded_plans(db).items():
        if db.dialect.name == "sqlite":
            ok = "USING INTEGER PRIMARY KEY" in plan and not re.search(
                r"SCAN (q|task_queue)\b", plan
            )
        else:
            # The primary key, or (expire) the leased rows' expiry index, which is as narrow.
            ok = "Seq Scan on task_queue" not in plan and bool(
                re.search(r"Index (Only )?Scan using \w+ on task_queue", plan)
            )
        if not ok:
            bad[kind] = plan
    assert not bad, "\n\n".join(f"{kind}:\n{plan}" for kind, plan in bad.items())


def test_the_idle_workers_next_due_read_is_one_step_into_the_fifo_index(db: Database) -> None:
    _load(db)
    with db.engine.connect() as conn:
        sql = str(NEXT_DUE.compile(conn))
        explain = "EXPLAIN QUERY PLAN " if db.dialect.name == "sqlite" else "EXPLAIN "
        plan = "\n".join(str(row[-1]) for row in conn.exec_driver_sql(explain + sql))
    assert "ix_task_queue_due_fifo" in plan, plan
    assert not re.search(r"Seq Scan|SCAN task_queue$|TEMP B-TREE", plan, re.M), plan


def test_guarded_batches_skip_the_leased_index_in_a_drain(db: Database) -> None:
    """In a drain the leased rows' index holds every claimed task's entry, finished ones
    included until vacuum, and the statistics (older than the bulk load) say few rows are
    leased: a guard that proves the index's predicate made completions read all of it."""
    if db.dialect.name != "postgresql":
        pytest.skip("PostgreSQL plans")
    TaskRepository(db).enqueue_many([TaskCreate(type="d", payload={}) for _ in range(3000)])
    leases = LeaseRepository(db)
    claimed = leases.claim("w", ["d"], limit=3000)
    leases.complete_many([(task.lease, None) for task in claimed[:2000]])  # dead entries
    batch = claimed[2000:2010]
    params = {
        **postgresql_sql.bind_guarded(
            [(t.task_id, "w", t.lease_token, None, "null", None) for t in batch]
        ),
        "now": utcnow(),
        "cancelled_message": "x",
    }
    plan = _explain_pg(db, postgresql_sql.GUARDED_SQL["complete"], params)
    assert "pk_task_queue" in plan, plan
    assert "ix_task_queue_lease_until" not in plan, plan
