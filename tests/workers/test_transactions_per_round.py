"""A busy worker records its finished tasks and claims the next ones in one transaction
(one round), not two: counted from the statements SQLite runs. With prefetch a round covers
the free slot plus the prefetched tasks, so a busy worker commits once per several tasks."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event

from queue_core.database import Database
from queue_core.repositories import TaskRepository
from queue_core.schemas import TaskCreate
from queue_core.states import TaskStatus
from tests.workers.test_runtime import run_burst
from workers.defaults import PREFETCH_DEFAULT

TASKS = 60


@pytest.mark.parametrize("prefetch", [0, PREFETCH_DEFAULT])
def test_write_transactions_per_task_at_concurrency_1(sqlite_url: str, prefetch: int) -> None:
    db = Database(sqlite_url)
    begins: list[str] = []

    @event.listens_for(db.engine, "connect")
    def trace(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.set_trace_callback(
            lambda sql: begins.append(sql) if sql.startswith("BEGIN IMMEDIATE") else None
        )

    try:
        tasks = TaskRepository(db)
        ids = [t.task_id for t in tasks.enqueue_many([TaskCreate(type="t.noop")] * TASKS)]
        begins.clear()
        run_burst(db, concurrency=1, prefetch=prefetch)
        assert {tasks.get(i).status for i in ids} == {TaskStatus.COMPLETED}
        for task_id in ids[:5]:
            assert [log.message for log in tasks.logs(task_id)] == [
                "enqueued",
                "leased",
                "completed",
            ]
        # Two transactions per task before (claim, then complete: 2 x 60 + 13 measured); one
        # per task without prefetch, plus registration, the sweep, maintenance and the stop
        # (60 + 13); with prefetch one per round of 1 + PREFETCH_DEFAULT tasks (after the first
        # task, which teaches the worker that t.noop is short), and at most one more per round
        # when the round outlasts the completer's 20 ms timer (a loaded machine).
        rounds = TASKS if prefetch == 0 else 2 * (1 + TASKS // (1 + prefetch) + 1)
        assert len(begins) <= rounds + 20, len(begins)
    finally:
        db.dispose()
