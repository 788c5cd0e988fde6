"""Outcomes as values and their one guarded, batched path (queue_core/transitions.py), and the
transition rules of issue 12: a cancellation accepted while a task runs wins over whatever the
attempt ends with (item 1), a completed task shows no stale error (items 4, 6), the back-off cap
and recovery without attempts left (item 24)."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from queue_core.claims import ClaimedTask, Lease
from queue_core.clock import ManualClock
from queue_core.database import Database
from queue_core.errors import LeaseLost
from queue_core.repositories import LeaseRepository, TaskRepository, WorkerRepository
from queue_core.repositories._common import LOGS
from queue_core.settings import RETRY_JITTER_FRACTION, QueueSettings
from queue_core.states import TaskStatus
from queue_core.transitions import (
    Applied,
    Cancelled,
    Completed,
    Failed,
    Released,
    Retry,
    after_failure,
)


def _claim_one(leases: LeaseRepository, worker: str = "w", **kwargs: object) -> ClaimedTask:
    [task] = leases.claim(worker, ["t"], **kwargs)  # type: ignore[arg-type]
    return task


def _events(db: Database, task_id: int) -> list[str]:
    with db.read() as conn:
        rows = conn.execute(
            select(LOGS.c.details).where(LOGS.c.task_id == task_id).order_by(LOGS.c.log_id)
        ).all()
    return [(row.details or {}).get("event", "") for row in rows]


# --- issue 12 item 1: a cancel accepted while leased ends the task cancelled ---


def test_a_return_after_an_accepted_cancel_ends_cancelled_with_its_result(
    db: Database, clock: ManualClock
) -> None:
    tasks, leases = TaskRepository(db, clock), LeaseRepository(db, clock)
    task_id = tasks.enqueue(type="t").task.task_id
    claimed = _claim_one(leases)
    assert tasks.cancel(task_id).immediate is False
    leases.complete(claimed.lease, {"answer": 42})
    task = tasks.get(task_id)
    assert task.status is TaskStatus.CANCELLED
    assert task.result == {"answer": 42}
    assert task.finished_at_utc is not None
    assert _events(db, task_id)[-1] == "cancelled"


@pytest.mark.parametrize("permanent", [False, True])
def test_an_exception_after_an_accepted_cancel_never_requeues(
    db: Database, clock: ManualClock, permanent: bool
) -> None:
    """The repro: the handler raises after the cancel was accepted. Before the fix the task went
    back to queued and its handler ran a second time."""
    tasks, leases = TaskRepository(db, clock), LeaseRepository(db, clock)
    task_id = tasks.enqueue(type="t", max_attempts=5).task.task_id
    claimed = _claim_one(leases)
    tasks.cancel(task_id)
    outcome = leases.fail(claimed.lease, "boom", permanent=permanent)
    assert outcome.status is TaskStatus.CANCELLED
    assert outcome.run_after_utc is None
    clock.advance(3600)
    assert leases.claim("w2", ["t"]) == []
    task = tasks.get(task_id)
    assert (task.status, task.attempts) == (TaskStatus.CANCELLED, 1)


def test_an_expiry_after_an_accepted_cancel_ends_cancelled(
    db: Database, clock: ManualClock
) -> None:
    tasks, leases = TaskRepository(db, clock), LeaseRepository(db, clock)
    task_id = tasks.enqueue(type="t", max_attempts=5).task.task_id
    _claim_one(leases, lease_seconds=5)
    tasks.cancel(task_id)
    clock.advance(6)
    assert leases.recover_expired().cancelled == [task_id]
    assert leases.claim("w2", ["t"]) == []
    assert tasks.get(task_id).status is TaskStatus.CANCELLED


def test_a_batch_reports_tasks_turned_cancelled(db: Database, clock: ManualClock) -> None:
    tasks, leases = TaskRepository(db, clock), LeaseRepository(db, clock)
    for _ in range(3):
        tasks.enqueue(type="t", max_attempts=5)
    a, b, c = leases.claim("w", ["t"], limit=3)
    tasks.cancel(b.task_id)
    applied = leases.apply(
        [
            Completed(a.lease, 1),
            Completed(b.lease, 2),
            Retry(c.lease, "boom", clock() + timedelta(seconds=1)),
        ]
    )
    assert sorted(applied.done) == sorted([a.task_id, c.task_id])
    assert applied.cancelled == [b.task_id]
    assert applied.lost == []
    assert applied.status == {
        a.task_id: TaskStatus.COMPLETED,
        b.task_id: TaskStatus.CANCELLED,
        c.task_id: TaskStatus.QUEUED,
    }


# --- issue 12 items 4 and 6: no stale error on a completed task ---


def test_a_completed_task_shows_no_error_of_an_earlier_attempt(
    db: Database, clock: ManualClock
) -> None:
    tasks, leases = TaskRepository(db, clock), LeaseRepository(db, clock)
    task_id = tasks.enqueue(type="t", max_attempts=5).task.task_id
    leases.fail(_claim_one(leases).lease, "attempt 1 broke")
    clock.advance(3600)
    assert tasks.get(task_id).error_message == "attempt 1 broke"
    leases.complete(_claim_one(leases).lease, "ok")
    task = tasks.get(task_id)
    assert (task.status, task.error_message, task.attempts) == (TaskStatus.COMPLETED, None, 2)
    assert "retried" in _events(db, task_id)  # the history stays in task_logs


def test_a_completed_task_shows_no_lease_expired_error(db: Database, clock: ManualClock) -> None:
    """Item 6: a crash of another handler expired this task's lease; it completed later."""
    tasks, leases = TaskRepository(db, clock), LeaseRepository(db, clock)
    task_id = tasks.enqueue(type="t", max_attempts=5).task.task_id
    _claim_one(leases, lease_seconds=5)
    clock.advance(6)
    leases.recover_expired()
    assert "lease expired" in (tasks.get(task_id).error_message or "")
    leases.complete_and_claim([(_claim_one(leases).lease, "ok")], "w", ["t"])
    assert tasks.get(task_id).error_message is None


# --- issue 12 item 24: the back-off cap, and recovery without attempts left ---


@pytest.mark.parametrize("cap", [300.0, 7.0])
def test_the_back_off_doubles_up_to_the_cap_over_15_failures(db_url: str, cap: float) -> None:
    db = Database(db_url, QueueSettings(retry_base_seconds=1.0, retry_cap_seconds=cap))
    try:
        clock = ManualClock()
        tasks, leases = TaskRepository(db, clock), LeaseRepository(db, clock, random.Random(7))
        task_id = tasks.enqueue(type="t", max_attempts=16).task.task_id
        delays = []
        for attempt in range(1, 16):
            claimed = _claim_one(leases)
            assert claimed.attempt == attempt
            outcome = leases.fail(claimed.lease, f"failure {attempt}")
            assert outcome.status is TaskStatus.QUEUED
            assert outcome.run_after_utc is not None
            delay = (outcome.run_after_utc - clock()).total_seconds()
            expected = min(2.0 ** (attempt - 1), cap)
            assert expected * (1 - RETRY_JITTER_FRACTION) - 1e-6 <= delay, attempt
            assert delay <= expected * (1 + RETRY_JITTER_FRACTION) + 1e-6, attempt
            assert leases.claim("w", ["t"]) == []  # not due before its back-off
            clock.advance(delay)
            delays.append(delay)
        assert max(delays) <= cap * (1 + RETRY_JITTER_FRACTION) + 1e-6
        assert max(delays) >= cap * (1 - RETRY_JITTER_FRACTION) - 1e-6  # the cap is reached
        assert tasks.get(task_id).attempts == 15
    finally:
        db.dispose()


def test_after_failure_caps_the_back_off_with_a_custom_setting() -> None:
    settings = QueueSettings(retry_base_seconds=2.0, retry_cap_seconds=10.0)
    clock = ManualClock()
    lease = Lease(1, "w", 1, 15)
    task = ClaimedTask(1, "t", {}, 100, 15, 20, 1, None, clock(), clock(), False, "w")
    assert task.lease == lease
    outcome = after_failure(
        task, "boom", permanent=False, now=clock(), settings=settings, rng=random.Random(1)
    )
    assert isinstance(outcome, Retry)
    delay = (outcome.at - clock()).total_seconds()
    assert 10.0 * (1 - RETRY_JITTER_FRACTION) <= delay <= 10.0 * (1 + RETRY_JITTER_FRACTION)
    last = after_failure(
        ClaimedTask(1, "t", {}, 100, 20, 20, 1, None, clock(), clock(), False, "w"),
        "boom",
        permanent=False,
        now=clock(),
        settings=settings,
    )
    assert last == Failed(Lease(1, "w", 1, 20), "boom", permanent=False)


def test_recovery_with_one_attempt_fails_and_is_never_claimed_again(
    db: Database, clock: ManualClock
) -> None:
    tasks, leases = TaskRepository(db, clock), LeaseRepository(db, clock)
    task_id = tasks.enqueue(type="t", max_attempts=1).task.task_id
    _claim_one(leases, lease_seconds=5)
    clock.advance(6)
    report = leases.recover_expired()
    assert (report.failed, report.requeued) == ([task_id], [])
    for _ in range(3):
        clock.advance(3600)
        leases.recover_expired()
        assert leases.claim("w2", ["t"]) == []
    task = tasks.get(task_id)
    assert (task.status, task.attempts) == (TaskStatus.FAILED, 1)
    assert "lease expired" in (task.error_message or "")


def test_a_lost_worker_with_one_attempt_fails_its_task_for_good(
    db: Database, clock: ManualClock
) -> None:
    """The worker-release path: a worker that stopped sending heartbeats, swept."""
    tasks, leases = TaskRepository(db, clock), LeaseRepository(db, clock)
    workers = WorkerRepository(db, clock)
    task_id = tasks.enqueue(type="t", max_attempts=1).task.task_id
    workers.register("gone", task_types=["t"])
    _claim_one(leases, "gone", lease_seconds=3600)
    report = leases.release_worker_tasks("gone", "worker stopped sending heartbeats")
    assert (report.failed, report.requeued) == ([task_id], [])
    clock.advance(7200)
    leases.recover_expired()
    assert leases.claim("w2", ["t"]) == []
    assert tasks.get(task_id).status is TaskStatus.FAILED


# --- the batched path ---


def test_one_apply_takes_every_kind_and_writes_one_log_row_each(
    db: Database, clock: ManualClock
) -> None:
    tasks, leases = TaskRepository(db, clock), LeaseRepository(db, clock)
    ids = [tasks.enqueue(type="t", max_attempts=3).task.task_id for _ in range(6)]
    claimed = leases.claim("w", ["t"], limit=6)
    assert sorted(t.task_id for t in claimed) == ids
    by_id = {t.task_id: t for t in claimed}
    c = [by_id[i] for i in ids]
    with db.read() as conn:
        logs_before = conn.execute(select(func.count()).select_from(LOGS)).scalar_one()
    applied = leases.apply(
        [
            Completed(c[0].lease, {"n": 0}),
            Completed(c[1].lease, [1]),
            Retry(c[2].lease, "again", clock() + timedelta(seconds=5)),
            Failed(c[3].lease, "bad input"),
            Released(c[4].lease),
            Cancelled(c[5].lease, "stopped"),
        ]
    )
    assert sorted(applied.done) == ids
    assert applied.lost == applied.cancelled == []
    states = {i: tasks.get(i) for i in ids}
    assert [states[i].status for i in ids] == [
        TaskStatus.COMPLETED,
        TaskStatus.COMPLETED,
        TaskStatus.QUEUED,
        TaskStatus.FAILED,
        TaskStatus.QUEUED,
        TaskStatus.CANCELLED,
    ]
    assert states[ids[0]].result == {"n": 0}
    assert states[ids[1]].result == [1]
    assert states[ids[2]].run_after_utc == clock() + timedelta(seconds=5)
    assert states[ids[3]].error_message == "bad input"
    assert states[ids[4]].attempts == 0  # a release does not use up the attempt
    assert states[ids[5]].error_message == "stopped"
    with db.read() as conn:
        logs_after = conn.execute(select(func.count()).select_from(LOGS)).scalar_one()
    assert logs_after == logs_before + 6
    assert _events(db, ids[2])[-1] == "retried"
    assert _events(db, ids[3])[-1] == "failed"


def test_a_lost_lease_in_a_batch_changes_nothing_of_it(db: Database, clock: ManualClock) -> None:
    tasks, leases = TaskRepository(db, clock), LeaseRepository(db, clock)
    for _ in range(3):
        tasks.enqueue(type="t")
    a, b, c = leases.claim("w", ["t"], limit=3)
    stale = Lease(b.task_id, b.worker_id, b.lease_token - 1, b.attempt)
    other = Lease(c.task_id, "someone-else", c.lease_token, c.attempt)
    applied = leases.apply([Completed(stale, 1), Completed(other, 2), Completed(a.lease, 3)])
    assert applied == Applied(
        done=[a.task_id],
        cancelled=[],
        lost=[b.task_id, c.task_id],
        status={a.task_id: TaskStatus.COMPLETED},
    )
    assert tasks.get(b.task_id).status is TaskStatus.LEASED
    assert tasks.get(c.task_id).status is TaskStatus.LEASED
    with pytest.raises(LeaseLost):
        leases.complete(stale)


def test_apply_and_claim_flushes_and_claims_in_one_call(db: Database, clock: ManualClock) -> None:
    from queue_core.claims import ClaimRequest

    tasks, leases = TaskRepository(db, clock), LeaseRepository(db, clock)
    for _ in range(4):
        tasks.enqueue(type="t")
    first = leases.claim("w", ["t"], limit=2)
    applied, claimed = leases.apply_and_claim(
        [Completed(t.lease, "ok") for t in first], ClaimRequest("w", ["t"], limit=5)
    )
    assert sorted(applied.done) == sorted(t.task_id for t in first)
    assert len(claimed) == 2
    assert tasks.stats().completed_tasks == 2
