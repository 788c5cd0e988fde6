"""The order each strategy claims in, on both backends (CONTRACT §5).

fifo: oldest due first; lifo: newest due first; priority: lowest value, then oldest due.
"Due" is ``run_after_utc``: a delayed task waits, then takes its place by its due time.
Ties on the due time fall back to insertion order (id).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from queue_core.clock import ManualClock
from queue_core.database import Database
from queue_core.repositories import LeaseRepository, TaskRepository
from queue_core.repositories._common import TASKS
from queue_core.schemas import TaskCreate
from queue_core.states import SchedulingStrategy, TaskStatus

ORDERED = ["fifo", "lifo", "priority"]
ALL = [s.value for s in SchedulingStrategy]


def _order_key(strategy: str) -> Callable[[dict[str, Any]], Any]:
    """The Python model of each strategy's order over due tasks."""
    if strategy == "fifo":
        return lambda t: (t["due"], t["id"])
    if strategy == "lifo":
        return lambda t: (-t["due"].timestamp(), -t["id"])
    return lambda t: (t["priority"], t["due"], t["id"])


def _fill(tasks: TaskRepository, clock: ManualClock) -> dict[str, int]:
    """A at 0 (p50), B at 1 (p10), C enqueued at 2 but due at 5 (p10), D and E at 3 (p100)."""
    ids = {}
    ids["A"] = tasks.enqueue(type="t", priority=50).task.task_id
    clock.advance(1)
    ids["B"] = tasks.enqueue(type="t", priority=10).task.task_id
    clock.advance(1)
    ids["C"] = tasks.enqueue(
        type="t", priority=10, run_after_utc=clock() + timedelta(seconds=3)
    ).task.task_id
    clock.advance(1)
    ids["D"] = tasks.enqueue(type="t", priority=100).task.task_id
    ids["E"] = tasks.enqueue(type="t", priority=100).task.task_id
    return ids


@pytest.mark.parametrize(
    ("strategy", "before_c_due", "after_c_due"),
    [
        # At t=4 C is not due; by t=10 it is, and it takes its place by its due time (5):
        # after D and E (due at 3) in fifo, before them in lifo, first of p10 in priority.
        ("fifo", ["A", "B"], ["D", "E", "C"]),
        ("lifo", ["E", "D"], ["C", "B", "A"]),
        ("priority", ["B", "A"], ["C", "D", "E"]),
    ],
)
def test_order_with_a_task_that_becomes_due_later(
    db: Database,
    clock: ManualClock,
    strategy: str,
    before_c_due: list[str],
    after_c_due: list[str],
) -> None:
    tasks = TaskRepository(db, clock)
    leases = LeaseRepository(db, clock)
    ids = _fill(tasks, clock)
    names = {v: k for k, v in ids.items()}
    clock.advance(1)  # t=4

    got = [
        names[t.task_id] for _ in before_c_due for t in leases.claim("w", ["t"], strategy=strategy)
    ]
    assert got == before_c_due
    clock.advance(6)  # t=10
    got = [
        names[t.task_id] for _ in after_c_due for t in leases.claim("w", ["t"], strategy=strategy)
    ]
    assert got == after_c_due
    assert leases.claim("w", ["t"], strategy=strategy) == []


@pytest.mark.parametrize("strategy", ORDERED)
def test_delayed_task_waits_until_due(db: Database, clock: ManualClock, strategy: str) -> None:
    tasks = TaskRepository(db, clock)
    leases = LeaseRepository(db, clock)
    delayed = tasks.enqueue(type="t", priority=1, run_after_utc=clock() + timedelta(seconds=10))
    assert leases.claim("w", ["t"], strategy=strategy) == []
    clock.advance(9.999)
    assert leases.claim("w", ["t"], strategy=strategy) == []
    clock.advance(0.001)  # exactly due: run_after_utc <= now
    [claimed] = leases.claim("w", ["t"], strategy=strategy)
    assert claimed.task_id == delayed.task.task_id


@pytest.mark.parametrize("strategy", ORDERED)
def test_batch_claim_returns_the_first_n_in_order(
    db: Database, clock: ManualClock, strategy: str
) -> None:
    tasks = TaskRepository(db, clock)
    leases = LeaseRepository(db, clock)
    rng = random.Random(7)
    model = []
    for _ in range(30):
        priority = rng.choice([1, 5, 100])
        delay = rng.choice([0, 0, 0, 2, 50])
        due = clock() + timedelta(seconds=delay)
        task = tasks.enqueue(type="t", priority=priority, run_after_utc=due).task
        model.append({"id": task.task_id, "priority": priority, "due": task.run_after_utc})
        clock.advance(rng.choice([0, 0.001, 0.5]))
    clock.advance(5)  # the 50 s delays stay in the future
    due_now = sorted((t for t in model if t["due"] <= clock()), key=_order_key(strategy))
    batch = leases.claim("w", ["t"], limit=7, strategy=strategy)
    assert [t.task_id for t in batch] == [t["id"] for t in due_now[:7]]
    rest = leases.claim("w", ["t"], limit=100, strategy=strategy)
    assert [t.task_id for t in rest] == [t["id"] for t in due_now[7:]]
    clock.advance(60)
    late = sorted((t for t in model if t not in due_now), key=_order_key(strategy))
    final = leases.claim("w", ["t"], limit=100, strategy=strategy)
    assert [t.task_id for t in final] == [t["id"] for t in late]


@pytest.mark.parametrize("strategy", ORDERED)
def test_random_interleaving_follows_the_model(
    db: Database, clock: ManualClock, strategy: str
) -> None:
    """Enqueues (some delayed), claims of random batch sizes and clock moves, interleaved."""
    tasks = TaskRepository(db, clock)
    leases = LeaseRepository(db, clock)
    rng = random.Random(strategy)
    pending: list[dict[str, Any]] = []
    for _ in range(60):
        action = rng.random()
        if action < 0.5:
            specs = [
                TaskCreate(
                    type="t",
                    priority=rng.choice([1, 2, 50, 1000]),
                    run_after_utc=clock() + timedelta(seconds=rng.choice([0, 0, 1, 3])),
                )
                for _ in range(rng.randint(1, 3))
            ]
            for task in tasks.enqueue_many(specs):
                pending.append(
                    {"id": task.task_id, "priority": task.priority, "due": task.run_after_utc}
                )
        elif action < 0.8:
            limit = rng.randint(1, 4)
            due = sorted((t for t in pending if t["due"] <= clock()), key=_order_key(strategy))
            got = [t.task_id for t in leases.claim("w", ["t"], limit=limit, strategy=strategy)]
            assert got == [t["id"] for t in due[:limit]]
            pending = [t for t in pending if t["id"] not in got]
        else:
            clock.advance(rng.choice([0.001, 0.5, 1, 2]))


@pytest.mark.parametrize("strategy", ALL)
def test_only_the_workers_types(db: Database, clock: ManualClock, strategy: str) -> None:
    tasks = TaskRepository(db, clock)
    leases = LeaseRepository(db, clock)
    a = tasks.enqueue(type="a", priority=1).task.task_id
    b = tasks.enqueue(type="b", priority=2).task.task_id
    c = tasks.enqueue(type="c", priority=3).task.task_id
    assert leases.claim("w", [], strategy=strategy) == []
    assert leases.claim("w", ["zzz"], limit=10, strategy=strategy) == []
    got = {t.task_id for t in leases.claim("w", ["c", "a"], limit=10, strategy=strategy)}
    assert got == {a, c}
    [only_b] = leases.claim("w", ["a", "b", "c"], limit=10, strategy=strategy)
    assert only_b.task_id == b


@pytest.mark.parametrize("strategy", ALL)
def test_claim_leases_counts_the_attempt_and_bumps_the_token(
    db: Database, clock: ManualClock, strategy: str
) -> None:
    tasks = TaskRepository(db, clock)
    leases = LeaseRepository(db, clock)
    task_id = tasks.enqueue(type="t", max_attempts=3).task.task_id
    tokens = []
    for attempt in (1, 2, 3):
        [claimed] = leases.claim("w1", ["t"], lease_seconds=10, strategy=strategy)
        assert (claimed.task_id, claimed.attempt, claimed.worker_id) == (task_id, attempt, "w1")
        assert claimed.lease_until_utc == clock() + timedelta(seconds=10)
        tokens.append(claimed.lease_token)
        task = tasks.get(task_id)
        assert task.status is TaskStatus.LEASED
        assert (task.attempts, task.locked_by) == (attempt, "w1")
        # Leased: nobody else can claim it.
        assert leases.claim("w2", ["t"], strategy=strategy) == []
        clock.advance(11)
        leases.recover_expired()
    assert len(set(tokens)) == 3
    assert tokens == sorted(tokens)
    assert tasks.get(task_id).status is TaskStatus.FAILED  # third expiry: no attempts left


@pytest.mark.parametrize("strategy", ALL)
def test_release_keeps_the_attempt_and_still_bumps_the_token(
    db: Database, clock: ManualClock, strategy: str
) -> None:
    tasks = TaskRepository(db, clock)
    leases = LeaseRepository(db, clock)
    task_id = tasks.enqueue(type="t").task.task_id
    [first] = leases.claim("w", ["t"], strategy=strategy)
    leases.release(first.lease)
    [second] = leases.claim("w", ["t"], strategy=strategy)
    assert second.task_id == task_id
    assert second.attempt == 1
    assert second.lease_token > first.lease_token


def _status_counts(db: Database) -> dict[str, int]:
    with db.read() as conn:
        rows = conn.execute(select(TASKS.c.status)).all()
    counts: dict[str, int] = {}
    for (status,) in rows:
        counts[status] = counts.get(status, 0) + 1
    return counts


@pytest.mark.parametrize("strategy", ALL)
def test_claim_limit_bounds_the_batch(db: Database, clock: ManualClock, strategy: str) -> None:
    tasks = TaskRepository(db, clock)
    leases = LeaseRepository(db, clock)
    tasks.enqueue_many([TaskCreate(type="t") for _ in range(10)])
    assert leases.claim("w", ["t"], limit=0, strategy=strategy) == []
    assert len(leases.claim("w", ["t"], limit=4, strategy=strategy)) == 4
    assert _status_counts(db) == {"leased": 4, "queued": 6}
    assert len(leases.claim("w", ["t"], limit=100, strategy=strategy)) == 6
    assert _status_counts(db) == {"leased": 10}


def test_claims_are_sorted_by_the_strategy_even_though_returning_is_not(
    db: Database, clock: ManualClock
) -> None:
    tasks = TaskRepository(db, clock)
    leases = LeaseRepository(db, clock)
    created: list[datetime] = []
    for priority in (5, 3, 9, 1, 7):
        created.append(tasks.enqueue(type="t", priority=priority).task.run_after_utc)
        clock.advance(1)
    batch = leases.claim("w", ["t"], limit=5, strategy="priority")
    assert [t.priority for t in batch] == [1, 3, 5, 7, 9]
