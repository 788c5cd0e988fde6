"""A hypothesis state machine over the whole lease lifecycle, on both backends.

Several simulated workers enqueue, claim, renew, complete, fail, release and finish cancelled
tasks; time moves (ManualClock) and expired leases are recovered; operators cancel and retry.
Workers keep every lease they ever got, so stale holders keep trying. A Python model says what
must happen; after every step the database must agree with it, and:

* no task is ever held by two live leases;
* attempts never exceed max_attempts;
* terminal states stay terminal unless an operator retries the task;
* a stale holder always gets LeaseLost and changes nothing (row and logs byte for byte);
* every transition wrote exactly one task_logs row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import delete, func, select, update

from queue_core.claims import Lease
from queue_core.clock import ManualClock
from queue_core.database import Database
from queue_core.errors import InvalidTransition, LeaseLost
from queue_core.models import QueueClockRow
from queue_core.repositories import LeaseRepository, TaskRepository
from queue_core.repositories._common import LOGS, TASKS, WORKERS
from queue_core.settings import RETRY_JITTER_FRACTION
from queue_core.states import TaskStatus

WORKERS_IDS = ["w0", "w1", "w2"]
LEASE_SECONDS = 10.0
TERMINAL = {"completed", "failed", "cancelled"}


@dataclass
class ModelTask:
    status: str
    attempts: int
    max_attempts: int
    run_after: datetime
    holder: Lease | None = None
    lease_until: datetime | None = None
    cancel_requested: bool = False
    logs: int = 1  # "enqueued"


class LeaseMachine(RuleBasedStateMachine):
    db: Database

    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock()
        with self.db.write() as conn:
            conn.execute(delete(LOGS))
            conn.execute(delete(TASKS))
            conn.execute(delete(WORKERS))
            conn.execute(update(QueueClockRow.__table__).values(vtime=0))
        self.tasks = TaskRepository(self.db, self.clock)
        self.leases = LeaseRepository(self.db, self.clock)
        self.model: dict[int, ModelTask] = {}

    leases_bundle = Bundle("leases")

    # --- helpers ---

    def _is_current(self, lease: Lease) -> bool:
        task = self.model[lease.task_id]
        return task.status == "leased" and task.holder == lease

    def _row(self, task_id: int) -> tuple[Any, ...]:
        with self.db.read() as conn:
            row = conn.execute(select(TASKS).where(TASKS.c.id == task_id)).one()
            logs = conn.execute(
                select(func.count()).select_from(LOGS).where(LOGS.c.task_id == task_id)
            ).scalar_one()
        return (*row, logs)

    def _expect_lost(self, lease: Lease, action: Any) -> None:
        before = self._row(lease.task_id)
        with pytest.raises(LeaseLost):
            action()
        assert self._row(lease.task_id) == before, "a stale holder changed the task"

    def _due(self) -> list[int]:
        now = self.clock()
        return [i for i, t in self.model.items() if t.status == "queued" and t.run_after <= now]

    # --- producers and operators ---

    @rule(
        priority=st.sampled_from([1, 50, 100]),
        max_attempts=st.integers(1, 3),
        delay=st.sampled_from([0, 0, 5]),
    )
    def enqueue(self, priority: int, max_attempts: int, delay: int) -> None:
        run_after = self.clock() + timedelta(seconds=delay)
        task = self.tasks.enqueue(
            type="t", priority=priority, max_attempts=max_attempts, run_after_utc=run_after
        ).task
        self.model[task.task_id] = ModelTask("queued", 0, max_attempts, task.run_after_utc)

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        task_id = data.draw(st.sampled_from(sorted(self.model)))
        task = self.model[task_id]
        if task.status in TERMINAL:
            with pytest.raises(InvalidTransition):
                self.tasks.cancel(task_id)
            return
        result = self.tasks.cancel(task_id)
        task.logs += 1
        if task.status == "queued":
            assert result.immediate
            task.status = "cancelled"
        else:
            assert not result.immediate
            task.cancel_requested = True

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data())
    def retry(self, data: st.DataObject) -> None:
        task_id = data.draw(st.sampled_from(sorted(self.model)))
        task = self.model[task_id]
        if task.status not in ("failed", "cancelled"):
            with pytest.raises(InvalidTransition):
                self.tasks.retry(task_id)
            return
        self.tasks.retry(task_id)
        task.status, task.attempts, task.run_after = "queued", 0, self.clock()
        task.holder, task.lease_until, task.cancel_requested = None, None, False
        task.logs += 1

    # --- workers ---

    @rule(
        target=leases_bundle,
        worker=st.sampled_from(WORKERS_IDS),
        limit=st.integers(1, 3),
        strategy=st.sampled_from(["fifo", "lifo", "priority", "weighted_random"]),
    )
    def claim(self, worker: str, limit: int, strategy: str) -> Any:
        due = self._due()
        claimed = self.leases.claim(
            worker, ["t"], limit=limit, lease_seconds=LEASE_SECONDS, strategy=strategy
        )
        assert len(claimed) == min(limit, len(due))
        out = []
        for c in claimed:
            task = self.model[c.task_id]
            assert c.task_id in due, "claimed a task that was not due and queued"
            assert task.holder is None or task.status != "leased"
            task.status, task.attempts = "leased", task.attempts + 1
            assert c.attempt == task.attempts
            task.holder, task.lease_until = c.lease, self.clock() + timedelta(seconds=LEASE_SECONDS)
            task.logs += 1
            out.append(c.lease)
        return multiple(*out)

    @rule(lease=leases_bundle)
    def renew(self, lease: Lease | None) -> None:
        if lease is None:
            return
        if self._is_current(lease):
            result = self.leases.renew(lease, LEASE_SECONDS)
            task = self.model[lease.task_id]
            task.lease_until = self.clock() + timedelta(seconds=LEASE_SECONDS)
            assert result.cancel_requested is task.cancel_requested
        else:
            self._expect_lost(lease, lambda: self.leases.renew(lease, LEASE_SECONDS))

    @rule(lease=leases_bundle)
    def complete(self, lease: Lease | None) -> None:
        if lease is None:
            return
        if self._is_current(lease):
            self.leases.complete(lease, {"by": lease.worker_id})
            task = self.model[lease.task_id]
            # CONTRACT §4: a cancellation accepted while it ran wins over the return.
            task.status = "cancelled" if task.cancel_requested else "completed"
            task.holder, task.lease_until = None, None
            task.logs += 1
        else:
            self._expect_lost(lease, lambda: self.leases.complete(lease, "late"))

    @rule(lease=leases_bundle, permanent=st.booleans())
    def fail(self, lease: Lease | None, permanent: bool) -> None:
        if lease is None:
            return
        if not self._is_current(lease):
            self._expect_lost(lease, lambda: self.leases.fail(lease, "late", permanent=permanent))
            return
        task = self.model[lease.task_id]
        outcome = self.leases.fail(lease, "boom", permanent=permanent)
        task.holder, task.lease_until = None, None
        task.logs += 1
        if task.cancel_requested:
            # CONTRACT §4: never queued again once its cancellation was accepted.
            assert outcome.status is TaskStatus.CANCELLED
            task.status = "cancelled"
        elif permanent or task.attempts >= task.max_attempts:
            assert outcome.status is TaskStatus.FAILED
            task.status = "failed"
        else:
            assert outcome.status is TaskStatus.QUEUED
            assert outcome.run_after_utc is not None
            delay = (outcome.run_after_utc - self.clock()).total_seconds()
            base = min(2 ** (task.attempts - 1), 300)
            assert base * (1 - RETRY_JITTER_FRACTION) - 1e-6 <= delay
            assert delay <= base * (1 + RETRY_JITTER_FRACTION) + 1e-6
            task.status, task.run_after = "queued", outcome.run_after_utc

    @rule(lease=leases_bundle)
    def release(self, lease: Lease | None) -> None:
        if lease is None:
            return
        if not self._is_current(lease):
            self._expect_lost(lease, lambda: self.leases.release(lease))
            return
        task = self.model[lease.task_id]
        self.leases.release(lease)
        task.attempts -= 1
        task.holder, task.lease_until = None, None
        task.logs += 1
        if task.cancel_requested:
            task.status = "cancelled"
        else:
            task.status, task.run_after = "queued", self.clock()

    @rule(lease=leases_bundle)
    def finish_cancelled(self, lease: Lease | None) -> None:
        if lease is None:
            return
        if not self._is_current(lease):
            self._expect_lost(lease, lambda: self.leases.mark_cancelled(lease))
            return
        task = self.model[lease.task_id]
        if not task.cancel_requested:
            return
        assert self.leases.is_cancel_requested(lease)
        self.leases.mark_cancelled(lease)
        task.status, task.holder, task.lease_until = "cancelled", None, None
        task.logs += 1

    # --- time ---

    @rule(seconds=st.sampled_from([0.5, 3, 11, 40]))
    def time_passes_and_expired_leases_are_recovered(self, seconds: float) -> None:
        now = self.clock.advance(seconds)
        report = self.leases.recover_expired()
        expected: dict[str, set[int]] = {"queued": set(), "failed": set(), "cancelled": set()}
        for task_id, task in self.model.items():
            if task.status != "leased" or task.lease_until is None or task.lease_until >= now:
                continue
            if task.cancel_requested:
                task.status = "cancelled"
            elif task.attempts >= task.max_attempts:
                task.status = "failed"
            else:
                task.status, task.run_after = "queued", now
            expected[task.status].add(task_id)
            task.holder, task.lease_until = None, None
            task.logs += 1
        assert set(report.requeued) == expected["queued"]
        assert set(report.failed) == expected["failed"]
        assert set(report.cancelled) == expected["cancelled"]

    # --- what must always hold ---

    @invariant()
    def database_agrees_with_the_model(self) -> None:
        with self.db.read() as conn:
            rows = conn.execute(
                select(
                    TASKS.c.id,
                    TASKS.c.status,
                    TASKS.c.attempts,
                    TASKS.c.max_attempts,
                    TASKS.c.locked_by,
                    TASKS.c.lease_token,
                    TASKS.c.lease_until_utc,
                    TASKS.c.cancel_requested,
                    TASKS.c.error_message,
                )
            ).all()
            logs = dict(
                conn.execute(select(LOGS.c.task_id, func.count()).group_by(LOGS.c.task_id)).all()
            )
        assert {row.id for row in rows} == set(self.model)
        for row in rows:
            task = self.model[row.id]
            assert row.status == task.status, (row, task)
            assert row.attempts == task.attempts
            assert 0 <= row.attempts <= row.max_attempts
            assert bool(row.cancel_requested) is task.cancel_requested
            assert logs.get(row.id, 0) == task.logs, "a transition without its task_logs row"
            if row.status == "completed":
                assert row.error_message is None, "a completed task shows a stale error"
            if row.status == "leased":
                # The one live lease is the model's holder: same worker, same token.
                assert task.holder is not None
                assert (row.locked_by, row.lease_token) == (
                    task.holder.worker_id,
                    task.holder.lease_token,
                )
                assert row.lease_until_utc == task.lease_until
            else:
                assert row.lease_until_utc is None


@pytest.mark.timeout(240)
def test_lease_lifecycle_state_machine(db: Database) -> None:
    LeaseMachine.db = db
    run_state_machine_as_test(
        LeaseMachine,
        settings=settings(
            max_examples=25,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
