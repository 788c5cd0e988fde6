"""A task's whole life on each backend: enqueue, claim, renew, complete; fail and retry."""

from __future__ import annotations

import pytest

from queue_core import LeaseLost, TaskStatus
from queue_core.clock import ManualClock
from queue_core.database import Database
from queue_core.repositories import LeaseRepository, TaskRepository


def test_enqueue_claim_complete(db: Database, clock: ManualClock) -> None:
    tasks = TaskRepository(db, clock)
    leases = LeaseRepository(db, clock)
    task = tasks.enqueue(type="demo.echo", payload={"n": 1}).task
    assert task.status is TaskStatus.QUEUED

    [claimed] = leases.claim("w1", ["demo.echo"], lease_seconds=30)
    assert (claimed.task_id, claimed.attempt, claimed.payload) == (task.task_id, 1, {"n": 1})
    clock.advance(10)
    renewed = leases.renew(claimed.lease, 30)
    assert renewed.cancel_requested is False

    leases.complete(claimed.lease, {"ok": True})
    done = tasks.get(task.task_id)
    assert done.status is TaskStatus.COMPLETED
    assert done.result == {"ok": True}
    assert [log.message for log in tasks.logs(task.task_id)] == ["enqueued", "leased", "completed"]

    with pytest.raises(LeaseLost):
        leases.complete(claimed.lease, {"again": True})


def test_expired_lease_is_recovered_and_late_worker_changes_nothing(
    db: Database, clock: ManualClock
) -> None:
    tasks = TaskRepository(db, clock)
    leases = LeaseRepository(db, clock)
    task_id = tasks.enqueue(type="t", max_attempts=3).task.task_id
    [first] = leases.claim("w1", ["t"], lease_seconds=5)
    clock.advance(6)
    report = leases.recover_expired()
    assert report.requeued == [task_id]
    [second] = leases.claim("w2", ["t"], lease_seconds=5)
    assert second.attempt == 2
    with pytest.raises(LeaseLost):
        leases.complete(first.lease, "late")
    leases.complete(second.lease, "on time")
    assert tasks.get(task_id).result == "on time"
