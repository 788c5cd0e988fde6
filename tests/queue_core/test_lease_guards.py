"""A stale lease holder gets LeaseLost and changes nothing, whatever happened to the task since.

The nastiest case is a holder whose task was recovered and then re-claimed by the SAME worker
id (another slot of the same worker process, or the same worker after a stall): only the lease
token tells the two leases apart.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select

from queue_core.claims import Lease
from queue_core.clock import ManualClock
from queue_core.database import Database
from queue_core.errors import LeaseLost
from queue_core.repositories import LeaseRepository, TaskRepository
from queue_core.repositories._common import LOGS, TASKS


def _snapshot(db: Database, task_id: int) -> tuple[Any, ...]:
    with db.read() as conn:
        row = conn.execute(select(TASKS).where(TASKS.c.id == task_id)).one()
        logs = conn.execute(
            select(func.count()).select_from(LOGS).where(LOGS.c.task_id == task_id)
        ).scalar_one()
    return (*row, logs)


def _stale_and_current(
    db: Database, clock: ManualClock, same_worker: bool
) -> tuple[LeaseRepository, Lease, Lease]:
    tasks = TaskRepository(db, clock)
    leases = LeaseRepository(db, clock)
    tasks.enqueue(type="t", max_attempts=5)
    [old] = leases.claim("w1", ["t"], lease_seconds=5)
    clock.advance(6)
    assert leases.recover_expired().requeued == [old.task_id]
    [new] = leases.claim("w1" if same_worker else "w2", ["t"], lease_seconds=5)
    assert new.task_id == old.task_id
    clock.advance(2)  # so that anything the stale holder wrote would show
    return leases, old.lease, new.lease


ACTIONS: dict[str, Callable[[LeaseRepository, Lease], Any]] = {
    "renew": lambda leases, lease: leases.renew(lease, 30),
    "renew_many": lambda leases, lease: _renew_many_strict(leases, lease),
    "complete": lambda leases, lease: leases.complete(lease, "late"),
    "fail": lambda leases, lease: leases.fail(lease, "late"),
    "fail_permanent": lambda leases, lease: leases.fail(lease, "late", permanent=True),
    "release": lambda leases, lease: leases.release(lease),
    "mark_cancelled": lambda leases, lease: leases.mark_cancelled(lease),
    "is_cancel_requested": lambda leases, lease: leases.is_cancel_requested(lease),
}


def _renew_many_strict(leases: LeaseRepository, lease: Lease) -> None:
    if lease.task_id not in leases.renew_many(lease.worker_id, [lease], 30, heartbeat=False):
        raise LeaseLost(lease.task_id, lease.worker_id)


@pytest.mark.parametrize("same_worker", [True, False], ids=["same-worker", "other-worker"])
@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_stale_holder_changes_nothing(
    db: Database, clock: ManualClock, action: str, same_worker: bool
) -> None:
    leases, old, new = _stale_and_current(db, clock, same_worker)
    before = _snapshot(db, old.task_id)
    with pytest.raises(LeaseLost):
        ACTIONS[action](leases, old)
    assert _snapshot(db, old.task_id) == before
    # The current holder is unaffected and can finish.
    leases.complete(new, "on time")


@pytest.mark.parametrize("action", ["complete", "fail_permanent", "mark_cancelled"])
def test_finished_task_ignores_its_late_holder(
    db: Database, clock: ManualClock, action: str
) -> None:
    tasks = TaskRepository(db, clock)
    leases = LeaseRepository(db, clock)
    task_id = tasks.enqueue(type="t").task.task_id
    [claimed] = leases.claim("w", ["t"])
    leases.complete(claimed.lease, "done")
    clock.advance(100)
    before = _snapshot(db, task_id)
    assert leases.recover_expired().total == 0  # a rescuer never touches a finished task
    for name in sorted(ACTIONS):
        with pytest.raises(LeaseLost):
            ACTIONS[name](leases, claimed.lease)
    assert _snapshot(db, task_id) == before


def test_renew_many_extends_only_the_leases_still_held(db: Database, clock: ManualClock) -> None:
    tasks = TaskRepository(db, clock)
    leases = LeaseRepository(db, clock)
    for _ in range(3):
        tasks.enqueue(type="t")
    held = leases.claim("w", ["t"], limit=3, lease_seconds=5)
    leases.complete(held[0].lease)
    clock.advance(1)
    renewed = leases.renew_many("w", [t.lease for t in held], 30)
    assert set(renewed) == {held[1].task_id, held[2].task_id}
