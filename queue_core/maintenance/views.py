"""The dashboard views (created by migration 0002), per dialect, in one place.

SQLite stores instants as INTEGER epoch microseconds (``queue_core.types.UtcDateTime``), so its
views compute "now" with ``julianday`` and render every instant as ISO-8601 text with a
``+00:00`` offset (millisecond precision) for people reading them; PostgreSQL's are
``timestamptz`` already. Ages and rates are plain numbers on both, computed against the
database's own clock, so a dashboard needs no clock of its own.

These statements are what revision 0002 creates. A later revision that changes a view adds its
own statements (and drops these) rather than editing them, so that upgrading an old database
step by step still builds every intermediate schema exactly.
"""

from __future__ import annotations

from sqlalchemy import TextClause, text

from queue_core.settings import WORKER_STALE_AFTER_SECONDS
from queue_core.types import SQLITE_NOW_MICROS

V_QUEUE_DEPTH = "v_queue_depth"
V_QUEUE_OLDEST_DUE = "v_queue_oldest_due"
V_TASK_OUTCOME_RATES = "v_task_outcome_rates"
V_WORKER_ACTIVITY = "v_worker_activity"
V_RECENT_FAILURES = "v_recent_failures"

VIEW_NAMES = (
    V_QUEUE_DEPTH,
    V_QUEUE_OLDEST_DUE,
    V_TASK_OUTCOME_RATES,
    V_WORKER_ACTIVITY,
    V_RECENT_FAILURES,
)

OUTCOME_WINDOWS = (("5m", 300), ("1h", 3600), ("24h", 86_400))
"""The windows of v_task_outcome_rates: (name, seconds)."""

RECENT_FAILURES_WINDOW_SECONDS = 86_400
LONGEST_WINDOW_SECONDS = max(seconds for _, seconds in OUTCOME_WINDOWS)
STALE_AFTER_MICROS = int(WORKER_STALE_AFTER_SECONDS * 1_000_000)

# The message TaskRepository/LeaseRepository write when an attempt failed and will be retried.
RETRY_LOG_MESSAGE = "retry scheduled"

_WINDOWS_VALUES = ", ".join(f"('{name}', {seconds})" for name, seconds in OUTCOME_WINDOWS)


# --- SQLite: INTEGER epoch microseconds in, ISO text out ---

_NOW = SQLITE_NOW_MICROS


def _iso(column: str) -> str:
    return f"strftime('%Y-%m-%dT%H:%M:%f+00:00', {column} / 1000000.0, 'unixepoch')"


def _age(column: str) -> str:
    return f"(({_NOW} - {column}) / 1000000.0)"


def _ago(seconds: str) -> str:
    return f"({_NOW} - ({seconds}) * 1000000)"


_SQLITE = {
    V_QUEUE_DEPTH: f"""
SELECT type,
       status,
       COUNT(*) AS task_count,
       SUM(CASE WHEN status = 'queued' AND run_after_utc <= {_NOW} THEN 1 ELSE 0 END)
           AS due_count
FROM task_queue
GROUP BY type, status
""",
    V_QUEUE_OLDEST_DUE: f"""
SELECT COUNT(*) AS due_tasks,
       (SELECT COUNT(*) FROM task_queue
        WHERE status = 'queued' AND run_after_utc > {_NOW}) AS delayed_tasks,
       {_iso("MIN(run_after_utc)")} AS oldest_due_utc,
       MAX(0.0, {_age("MIN(run_after_utc)")}) AS oldest_due_age_seconds
FROM task_queue
WHERE status = 'queued' AND run_after_utc <= {_NOW}
""",
    V_TASK_OUTCOME_RATES: f"""
WITH windows(window_name, window_seconds) AS (VALUES {_WINDOWS_VALUES}),
finished AS (
    SELECT status, finished_at_utc FROM task_queue
    WHERE finished_at_utc IS NOT NULL
      AND finished_at_utc >= {_ago(str(LONGEST_WINDOW_SECONDS))}
),
counted AS (
    SELECT w.window_name,
           w.window_seconds,
           COUNT(CASE WHEN f.status = 'completed' THEN 1 END) AS completed,
           COUNT(CASE WHEN f.status = 'failed' THEN 1 END) AS failed,
           COUNT(CASE WHEN f.status = 'cancelled' THEN 1 END) AS cancelled,
           (SELECT COUNT(*) FROM task_logs
            WHERE at_utc >= {_ago("w.window_seconds")}
              AND message = '{RETRY_LOG_MESSAGE}') AS retried
    FROM windows AS w
    LEFT JOIN finished AS f ON f.finished_at_utc >= {_ago("w.window_seconds")}
    GROUP BY w.window_name, w.window_seconds
)
SELECT window_name,
       window_seconds,
       completed,
       failed,
       cancelled,
       retried,
       CAST(completed AS REAL) / NULLIF(completed + failed, 0) AS success_rate,
       CAST(failed AS REAL) / NULLIF(completed + failed, 0) AS failure_rate,
       (completed + failed + cancelled) * 60.0 / window_seconds AS finished_per_minute
FROM counted
""",
    V_WORKER_ACTIVITY: f"""
SELECT w.worker_id,
       CASE WHEN w.stopped_at_utc IS NULL
                 AND w.heartbeat_utc >= {_NOW} - {STALE_AFTER_MICROS}
            THEN 'active' ELSE 'stale' END AS status,
       w.hostname,
       w.pid,
       w.concurrency,
       w.strategy,
       COALESCE(l.leased_tasks, 0) AS leased_tasks,
       {_iso("w.heartbeat_utc")} AS last_heartbeat_utc,
       {_age("w.heartbeat_utc")} AS heartbeat_age_seconds,
       {_iso("w.started_at_utc")} AS started_at_utc,
       {_iso("w.stopped_at_utc")} AS stopped_at_utc
FROM workers AS w
LEFT JOIN (
    SELECT locked_by, COUNT(*) AS leased_tasks
    FROM task_queue WHERE status = 'leased'
    GROUP BY locked_by
) AS l ON l.locked_by = w.worker_id
""",
    V_RECENT_FAILURES: f"""
SELECT id AS task_id,
       type,
       attempts,
       max_attempts,
       error_message,
       locked_by AS last_worker_id,
       {_iso("finished_at_utc")} AS finished_at_utc,
       {_age("finished_at_utc")} AS failed_age_seconds
FROM task_queue
WHERE status = 'failed'
  AND finished_at_utc IS NOT NULL
  AND finished_at_utc >= {_ago(str(RECENT_FAILURES_WINDOW_SECONDS))}
""",
}


# --- PostgreSQL: timestamptz in and out ---


def _pg_age(column: str) -> str:
    return f"EXTRACT(EPOCH FROM (now() - {column}))::float8"


def _pg_ago(seconds: str) -> str:
    return f"(now() - ({seconds}) * interval '1 second')"


_POSTGRESQL = {
    V_QUEUE_DEPTH: """
SELECT type,
       status,
       COUNT(*) AS task_count,
       COUNT(*) FILTER (WHERE status = 'queued' AND run_after_utc <= now()) AS due_count
FROM task_queue
GROUP BY type, status
""",
    V_QUEUE_OLDEST_DUE: f"""
SELECT COUNT(*) AS due_tasks,
       (SELECT COUNT(*) FROM task_queue
        WHERE status = 'queued' AND run_after_utc > now()) AS delayed_tasks,
       MIN(run_after_utc) AS oldest_due_utc,
       GREATEST(0.0, {_pg_age("MIN(run_after_utc)")}) AS oldest_due_age_seconds
FROM task_queue
WHERE status = 'queued' AND run_after_utc <= now()
""",
    V_TASK_OUTCOME_RATES: f"""
WITH windows(window_name, window_seconds) AS (VALUES {_WINDOWS_VALUES}),
finished AS (
    SELECT status, finished_at_utc FROM task_queue
    WHERE finished_at_utc IS NOT NULL
      AND finished_at_utc >= {_pg_ago(str(LONGEST_WINDOW_SECONDS))}
),
counted AS (
    SELECT w.window_name,
           w.window_seconds,
           COUNT(*) FILTER (WHERE f.status = 'completed') AS completed,
           COUNT(*) FILTER (WHERE f.status = 'failed') AS failed,
           COUNT(*) FILTER (WHERE f.status = 'cancelled') AS cancelled,
           (SELECT COUNT(*) FROM task_logs
            WHERE at_utc >= {_pg_ago("w.window_seconds")}
              AND message = '{RETRY_LOG_MESSAGE}') AS retried
    FROM windows AS w
    LEFT JOIN finished AS f ON f.finished_at_utc >= {_pg_ago("w.window_seconds")}
    GROUP BY w.window_name, w.window_seconds
)
SELECT window_name,
       window_seconds,
       completed,
       failed,
       cancelled,
       retried,
       completed::float8 / NULLIF(completed + failed, 0) AS success_rate,
       failed::float8 / NULLIF(completed + failed, 0) AS failure_rate,
       (completed + failed + cancelled) * 60.0::float8 / window_seconds AS finished_per_minute
FROM counted
""",
    V_WORKER_ACTIVITY: f"""
SELECT w.worker_id,
       CASE WHEN w.stopped_at_utc IS NULL
                 AND w.heartbeat_utc >= {_pg_ago(str(WORKER_STALE_AFTER_SECONDS))}
            THEN 'active' ELSE 'stale' END AS status,
       w.hostname,
       w.pid,
       w.concurrency,
       w.strategy,
       COALESCE(l.leased_tasks, 0) AS leased_tasks,
       w.heartbeat_utc AS last_heartbeat_utc,
       {_pg_age("w.heartbeat_utc")} AS heartbeat_age_seconds,
       w.started_at_utc,
       w.stopped_at_utc
FROM workers AS w
LEFT JOIN (
    SELECT locked_by, COUNT(*) AS leased_tasks
    FROM task_queue WHERE status = 'leased'
    GROUP BY locked_by
) AS l ON l.locked_by = w.worker_id
""",
    V_RECENT_FAILURES: f"""
SELECT id AS task_id,
       type,
       attempts,
       max_attempts,
       error_message,
       locked_by AS last_worker_id,
       finished_at_utc,
       {_pg_age("finished_at_utc")} AS failed_age_seconds
FROM task_queue
WHERE status = 'failed'
  AND finished_at_utc IS NOT NULL
  AND finished_at_utc >= {_pg_ago(str(RECENT_FAILURES_WINDOW_SECONDS))}
""",
}

VIEW_SQL: dict[str, dict[str, str]] = {"sqlite": _SQLITE, "postgresql": _POSTGRESQL}
"""dialect name → view name → the SELECT behind the view."""


def _statement(sql: str) -> TextClause:
    # The view bodies hold no bind parameters: every colon is literal ('+00:00', '::float8').
    return text(sql.replace(":", "\\:"))


def create_view_statements(dialect: str) -> list[TextClause]:
    bodies = VIEW_SQL[dialect]
    return [_statement(f"CREATE VIEW {name} AS{bodies[name]}") for name in VIEW_NAMES]


def drop_view_statements() -> list[TextClause]:
    return [text(f"DROP VIEW IF EXISTS {name}") for name in reversed(VIEW_NAMES)]
