"""complete_and_claim: a worker's completion and its next claim in one transaction, each
part exactly what complete_many and claim do on their own."""

from __future__ import annotations

from dataclasses import replace

from queue_core.clock import ManualClock
from queue_core.database import Database
from queue_core.repositories import LeaseRepository, TaskRepository
from queue_core.states import TaskStatus


def test_completes_then_claims_in_one_call(db: Database, clock: ManualClock) -> None:
    tasks = TaskRepository(db, clock)
    leases = LeaseRepository(db, clock)
    ids = [tasks.enqueue(type="t", payload={"i": i}).task.task_id for i in range(4)]
    [first] = leases.claim("w", ["t"], limit=1)
    clock.advance(1)
    lost, claimed = leases.complete_and_claim([(first.lease, {"ok": 1})], "w", ["t"], limit=2)
    assert lost == []
    assert [t.task_id for t in claimed] == ids[1:3]
    done = tasks.get(first.task_id)
    assert done.status is TaskStatus.COMPLETED
    assert done.result == {"ok": 1}
    assert [log.message for log in tasks.logs(first.task_id)] == ["enqueued", "leased", "completed"]
    for task in claimed:
        assert tasks.get(task.task_id).status is TaskStatus.LEASED
        assert [log.message for log in tasks.logs(task.task_id)] == ["enqueued", "leased"]


def test_a_lost_lease_is_reported_and_the_claim_still_happens(
    db: Database, clock: ManualClock
) -> None:
    tasks = TaskRepository(db, clock)
    leases = LeaseRepository(db, clock)
    first_id = tasks.enqueue(type="t").task.task_id
    second_id = tasks.enqueue(type="t").task.task_id
    [first] = leases.claim("w", ["t"], limit=1)
    stale = replace(first.lease, lease_token=first.lease.lease_token + 7)
    lost, claimed = leases.complete_and_claim([(stale, None)], "w", ["t"], limit=5)
    assert lost == [first_id]
    assert [t.task_id for t in claimed] == [second_id]
    assert tasks.get(first_id).status is TaskStatus.LEASED  # untouched by the stale holder


def test_nothing_left_to_claim(db: Database, clock: ManualClock) -> None:
    tasks = TaskRepository(db, clock)
    leases = LeaseRepository(db, clock)
    tasks.enqueue(type="t")
    [only] = leases.claim("w", ["t"], limit=1)
    lost, claimed = leases.complete_and_claim([(only.lease, None)], "w", ["t"], limit=3)
    assert (lost, claimed) == ([], [])
    assert tasks.get(only.task_id).status is TaskStatus.COMPLETED
