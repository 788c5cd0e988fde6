"""enqueue and enqueue_many build the returned Task without reading the row back: it must be
exactly the task the database holds, ids must map to the right specs, and every new task
gets its "enqueued" log row in the same transaction."""

from __future__ import annotations

import threading
from datetime import timedelta

from sqlalchemy import text

from queue_core.clock import ManualClock
from queue_core.database import Database
from queue_core.repositories import TaskRepository
from queue_core.schemas import TaskCreate


def test_returned_tasks_are_what_the_database_holds(db: Database, clock: ManualClock) -> None:
    tasks = TaskRepository(db, clock)
    one = tasks.enqueue(
        type="a.b",
        payload={"n": 1.5, "s": "é", "l": [1, {"x": None}]},
        priority=7,
        compatibility={"region": "us"},
        max_attempts=3,
        timeout_seconds=2.5,
    ).task
    delayed = tasks.enqueue(type="a.b", run_after_utc=clock() + timedelta(hours=1)).task
    batch = tasks.enqueue_many(
        [TaskCreate(type=f"t{i}", payload={"i": i}, priority=1 + i) for i in range(30)]
    )
    for task in [one, delayed, *batch]:
        assert tasks.get(task.task_id) == task
    assert [t.payload["i"] for t in batch] == list(range(30))
    assert [t.type for t in batch] == [f"t{i}" for i in range(30)]
    assert [t.task_id for t in batch] == sorted(t.task_id for t in batch)
    for task in batch:
        assert [log.message for log in tasks.logs(task.task_id)] == ["enqueued"]


def test_batch_ids_map_to_specs_after_deletions(db: Database, clock: ManualClock) -> None:
    tasks = TaskRepository(db, clock)
    first = tasks.enqueue_many([TaskCreate(type="t", payload={"i": i}) for i in range(5)])
    with db.write() as conn:  # the highest ids are gone; AUTOINCREMENT never reuses them
        conn.execute(text("DELETE FROM task_queue WHERE id >= :id"), {"id": first[2].task_id})
    again = tasks.enqueue_many([TaskCreate(type="u", payload={"i": i}) for i in range(5)])
    assert again[0].task_id > first[-1].task_id
    for task in again:
        assert tasks.get(task.task_id) == task


def test_concurrent_batches_keep_their_ids(db_url: str) -> None:
    """Batches from several threads (and, on PostgreSQL, connections) interleave; each
    returned task still names its own row."""
    db = Database(db_url)
    tasks = TaskRepository(db)
    results: dict[int, list[int]] = {}
    errors: list[BaseException] = []

    def produce(k: int) -> None:
        try:
            got = tasks.enqueue_many(
                [TaskCreate(type=f"p{k}", payload={"k": k, "i": i}) for i in range(200)]
            )
            results[k] = [t.task_id for t in got]
            assert [t.payload for t in got] == [{"k": k, "i": i} for i in range(200)]
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=produce, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    try:
        assert not errors
        for k, ids in results.items():
            for i, task_id in enumerate(ids):
                assert tasks.get(task_id).payload == {"k": k, "i": i}
    finally:
        db.dispose()
