"""A busy worker records its finished tasks and claims the next ones in one transaction
(LeaseRepository.complete_and_claim), not two: counted from the statements SQLite runs."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event

from queue_core.database import Database
from queue_core.repositories import TaskRepository
from queue_core.schemas import TaskCreate
from queue_core.states import TaskStatus
from tests.workers.test_runtime import run_burst

TASKS = 60


def test_one_write_transaction_per_task_at_concurrency_1(sqlite_url: str) -> None:
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
        run_burst(db, concurrency=1)
        assert {tasks.get(i).status for i in ids} == {TaskStatus.COMPLETED}
        for task_id in ids[:5]:
            assert [log.message for log in tasks.logs(task_id)] == [
                "enqueued",
                "leased",
                "completed",
            ]
        # Two transactions per task before (claim, then complete: 2 x 60 + 13 measured); now
        # one per task plus registration, the sweep, maintenance and the stop (60 + 13).
        assert len(begins) <= TASKS + 20, len(begins)
    finally:
        db.dispose()
