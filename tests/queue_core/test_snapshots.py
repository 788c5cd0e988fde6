"""TaskRepository.snapshots: the public seam the workers' run registry reads (issue 12
item 22), instead of querying the models' tables itself."""

from __future__ import annotations

from queue_core.database import Database
from queue_core.repositories import TaskRepository
from queue_core.repositories.tasks import SNAPSHOT_CHUNK
from queue_core.schemas import TaskCreate
from queue_core.states import TaskStatus


def test_snapshots_by_id_and_by_key(db: Database) -> None:
    tasks = TaskRepository(db)
    plain = tasks.enqueue(type="s.a", payload={"n": 1}).task
    keyed = tasks.enqueue(type="s.b", idempotency_key="run-7").task
    tasks.cancel(keyed.task_id)

    (by_id,) = tasks.snapshots(ids=[plain.task_id, 999_999])
    assert (by_id.task_id, by_id.type, by_id.payload) == (plain.task_id, "s.a", {"n": 1})
    assert by_id.status is TaskStatus.QUEUED
    (by_key,) = tasks.snapshots(idempotency_keys=["run-7", "unknown"])
    assert (by_key.task_id, by_key.status) == (keyed.task_id, TaskStatus.CANCELLED)
    assert by_key.finished_at_utc is not None
    assert tasks.snapshots() == []


def test_snapshots_of_many_ids_are_read_in_chunks(db: Database) -> None:
    tasks = TaskRepository(db)
    ids = [t.task_id for t in tasks.enqueue_many([TaskCreate(type="s.many")] * 3)]
    wanted = ids + list(range(10**6, 10**6 + SNAPSHOT_CHUNK + 10))
    assert sorted(s.task_id for s in tasks.snapshots(ids=wanted)) == ids
