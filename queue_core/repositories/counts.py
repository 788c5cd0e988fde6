"""Tasks per type and state, each state counted from the index that holds it.

Queued and leased tasks are few and have partial indexes of their own (ix_task_queue_queued_type,
ix_task_queue_lease_until); finished ones are the retained history and are counted from
ix_task_queue_finished_status_type alone, never from the rows with their payloads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, func, literal, select, text, union_all

from queue_core.repositories._common import TASKS
from queue_core.states import TERMINAL_STATES, TaskStatus

FINISHED_STATES = frozenset(status.value for status in TERMINAL_STATES)
ALL_STATES = tuple(status.value for status in TaskStatus)


def count_by_type(
    conn: Connection, statuses: Sequence[str] = ALL_STATES
) -> dict[str, dict[str, int]]:
    """``{type: {status: count}}`` for the given states (states with no task are left out)."""
    live = [status for status in statuses if status not in FINISHED_STATES]
    finished = sorted(FINISHED_STATES.intersection(statuses))
    parts: list[Any] = [
        select(TASKS.c.type, literal(status).label("status"), func.count())
        # Written out, not bound: SQLite uses a partial index only when the query's own
        # text implies its condition, and a bound parameter proves nothing.
        .where(text(f"status = '{TaskStatus(status).value}'"))
        .group_by(TASKS.c.type)
        for status in live
    ]
    if finished:
        # The literal IS NOT NULL term is what lets SQLite pick the partial index.
        parts.append(
            select(TASKS.c.type, TASKS.c.status, func.count())
            .where(TASKS.c.finished_at_utc.is_not(None), TASKS.c.status.in_(finished))
            .group_by(TASKS.c.status, TASKS.c.type)
        )
    if not parts:
        return {}
    by_type: dict[str, dict[str, int]] = {}
    for task_type, status, count in conn.execute(union_all(*parts)):
        if count:
            by_type.setdefault(task_type, {})[status] = int(count)
    return by_type
