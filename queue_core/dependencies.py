"""Task dependencies (CONTRACT §4, §9): the bookkeeping that keeps the claim one indexed seek.

A task enqueued with ``depends_on`` stores one ``task_dependencies`` edge per dependency and
counts, in ``task_queue.pending_deps``, those not completed yet. The claim asks only
``pending_deps = 0``: it never walks the graph. The graph is walked only when a task with
dependents (``has_dependents``) ends, in the transaction that ends it:

* completed: each dependent's counter goes down by one (:func:`dependencies_completed`);
* failed or cancelled: each dependent still waiting ends ``cancelled`` with an
  ``error_message`` naming the cause, and so on transitively (:func:`dependencies_ended`).

Cycles are impossible by construction: a task can only depend on tasks that already exist.
Enqueue marks the dependencies ``has_dependents`` with an UPDATE, which locks their rows on
PostgreSQL: a dependency that ends meanwhile waits for the enqueue to commit and then sees the
new edge, so no completion can slip between the count and the edge.

All functions work on a DBAPI cursor inside the caller's write transaction, with statements
written once for both dialects (``:name`` parameters, converted by the dialect's
``dbapi_sql``; id lists expanded to one parameter each).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import ModuleType
from typing import Any

from queue_core.audit import TaskLogWriter, log_entry
from queue_core.errors import DependencyNotFound
from queue_core.settings import DEPENDENCY_CASCADE_MAX_DEPTH

COMPLETED = "completed"
FAILED = "failed"
CANCELLED = "cancelled"


def _in(prefix: str, ids: Sequence[int]) -> tuple[str, dict[str, int]]:
    names = [f"{prefix}{i}" for i in range(len(ids))]
    return ", ".join(f":{n}" for n in names), dict(zip(names, ids, strict=True))


@dataclass
class CascadeReport:
    """What the end of some tasks did to the tasks that depend on them."""

    ready: list[int] = field(default_factory=list)
    """Dependents whose last dependency just completed: claimable now."""
    cancelled: dict[int, str] = field(default_factory=dict)
    """Dependents cancelled, with their error message."""


def mark_dependencies(
    cursor: Any, sql: ModuleType, depends_on: Sequence[int], now: Any
) -> dict[int, str]:
    """Flag the dependencies of a task being enqueued (locking their rows) and return their
    statuses. DependencyNotFound names the ids that do not exist."""
    if not depends_on:
        return {}
    ids = list(dict.fromkeys(depends_on))
    placeholders, params = _in("d", ids)
    cursor.execute(
        sql.dbapi_sql(
            "UPDATE task_queue SET has_dependents = true"
            f" WHERE id IN ({placeholders}) RETURNING id, status"
        ),
        params,
    )
    found = {row[0]: row[1] for row in cursor.fetchall()}
    missing = [task_id for task_id in ids if task_id not in found]
    if missing:
        raise DependencyNotFound(missing)
    return found


def pending_count(statuses: dict[int, str]) -> int:
    return sum(1 for status in statuses.values() if status != COMPLETED)


def insert_edges(cursor: Any, sql: ModuleType, task_id: int, depends_on: Iterable[int]) -> None:
    rows = [{"task_id": task_id, "depends_on_id": dep} for dep in dict.fromkeys(depends_on)]
    if rows:
        cursor.executemany(
            sql.dbapi_sql(
                "INSERT INTO task_dependencies (task_id, depends_on_id)"
                " VALUES (:task_id, :depends_on_id)"
            ),
            rows,
        )


def dependencies_of(cursor: Any, sql: ModuleType, task_ids: Sequence[int]) -> dict[int, list[int]]:
    """``depends_on`` of each task, in dependency id order."""
    if not task_ids:
        return {}
    placeholders, params = _in("t", list(task_ids))
    cursor.execute(
        sql.dbapi_sql(
            "SELECT task_id, depends_on_id FROM task_dependencies"
            f" WHERE task_id IN ({placeholders}) ORDER BY task_id, depends_on_id"
        ),
        params,
    )
    found: dict[int, list[int]] = {}
    for task_id, dep in cursor.fetchall():
        found.setdefault(task_id, []).append(dep)
    return found


def dependencies_completed(
    cursor: Any, sql: ModuleType, completed: Sequence[int], now: datetime
) -> list[int]:
    """Count down the dependents of tasks that just completed; returns the dependents that
    became claimable. Pass only ids whose completion this transaction made (and, to skip
    the work, only those with ``has_dependents``)."""
    if not completed:
        return []
    placeholders, params = _in("c", list(completed))
    cursor.execute(
        sql.dbapi_sql(
            f"""UPDATE task_queue
            SET pending_deps = pending_deps - (
                    SELECT count(*) FROM task_dependencies AS d
                    WHERE d.task_id = task_queue.id AND d.depends_on_id IN ({placeholders})),
                updated_at_utc = :now
            WHERE id IN (SELECT task_id FROM task_dependencies
                         WHERE depends_on_id IN ({placeholders}))
              AND status = 'queued' AND pending_deps > 0
            RETURNING id, pending_deps"""
        ),
        {**params, "now": sql.bind_time(now)},
    )
    return sorted(task_id for task_id, pending in cursor.fetchall() if pending == 0)


def dependencies_ended(
    cursor: Any, sql: ModuleType, logs: TaskLogWriter, ended: dict[int, str], now: datetime
) -> dict[int, str]:
    """Cancel, transitively, every waiting dependent of tasks that just ended ``failed`` or
    ``cancelled`` (``ended`` maps their ids to that status). Returns the cancelled ids with
    their error messages, and writes a "cancelled" task_logs row for each."""
    cause = {
        task_id: f"dependency {task_id} {'failed' if status == FAILED else 'was cancelled'}"
        for task_id, status in ended.items()
        if status in (FAILED, CANCELLED)
    }
    cancelled: dict[int, str] = {}
    frontier = list(cause)
    depth = 0
    bound = sql.bind_time(now)
    while frontier and depth < DEPENDENCY_CASCADE_MAX_DEPTH:
        depth += 1
        placeholders, params = _in("e", frontier)
        cursor.execute(
            sql.dbapi_sql(
                "SELECT d.task_id, min(d.depends_on_id) FROM task_dependencies AS d"
                " JOIN task_queue AS t ON t.id = d.task_id"
                f" WHERE d.depends_on_id IN ({placeholders}) AND t.status = 'queued'"
                " GROUP BY d.task_id"
            ),
            params,
        )
        waiting = sorted(cursor.fetchall())
        if not waiting:
            break
        rows = []
        for task_id, dep in waiting:
            message = f"cancelled because {cause[dep]}"
            cause[task_id] = f"dependency {task_id} was cancelled ({cause[dep]})"
            rows.append({"id": task_id, "message": message, "now": bound})
        changed = []
        for row in rows:
            cursor.execute(
                sql.dbapi_sql(
                    """UPDATE task_queue
                    SET status = 'cancelled', error_message = :message, finished_at_utc = :now,
                        updated_at_utc = :now, wr_key = NULL
                    WHERE id = :id AND status = 'queued'
                    RETURNING id"""
                ),
                row,
            )
            if cursor.fetchone() is not None:
                cancelled[row["id"]] = row["message"]
                changed.append(row["id"])
        frontier = changed
    logs.write(
        cursor,
        [
            log_entry(task_id, "cancelled", now, level="WARNING", event="cancelled", reason=message)
            for task_id, message in cancelled.items()
        ],
    )
    return cancelled


def after_transitions(
    cursor: Any,
    sql: ModuleType,
    logs: TaskLogWriter,
    ended: dict[int, str],
    now: datetime,
) -> CascadeReport:
    """Everything the end of tasks does to their dependents: ``ended`` maps the ids of tasks
    that just ended (and have dependents) to their new status."""
    report = CascadeReport()
    completed = [task_id for task_id, status in ended.items() if status == COMPLETED]
    report.ready = dependencies_completed(cursor, sql, completed, now)
    report.cancelled = dependencies_ended(cursor, sql, logs, ended, now)
    return report


__all__ = [
    "CascadeReport",
    "after_transitions",
    "dependencies_completed",
    "dependencies_ended",
    "dependencies_of",
    "insert_edges",
    "mark_dependencies",
    "pending_count",
]
