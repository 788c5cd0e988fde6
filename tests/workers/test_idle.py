"""An idle worker sleeps until work is announced or due instead of claiming every poll
interval (issue 15: idle workers must not load the database), on both backends."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from queue_core.clock import ManualClock, utcnow
from queue_core.database import Database
from queue_core.repositories import LeaseRepository, TaskRepository
from queue_core.settings import IDLE_SLEEP_MAX_SECONDS
from tests.workers.conftest import wait_for_status
from tests.workers.test_execution import detached_fetcher
from tests.workers.test_runtime import records, test_handlers
from workers import Worker, WorkerConfig
from workers.fetcher import Fetcher

__all__ = ["records"]  # the fixture, used by name

POLL = 0.1


def _spy(monkeypatch: pytest.MonkeyPatch, cls: type, name: str) -> list[float]:
    """Record when ``cls.name`` is called (the real method still runs)."""
    calls: list[float] = []
    original = getattr(cls, name)

    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(time.monotonic())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, name, spy)
    return calls


def _fetcher(db: Database, clock: ManualClock) -> Fetcher:
    return detached_fetcher(["t.noop"], leases=LeaseRepository(db, clock), clock=clock)


def test_idle_wait_sleeps_until_the_next_due_task(db: Database) -> None:
    clock = ManualClock()
    fetcher = _fetcher(db, clock)
    tasks = TaskRepository(db, clock)
    assert fetcher.idle_wait(0.5, listening=False) == 0.5  # announcements may be lost: poll
    assert fetcher.idle_wait(0.5, listening=True) == IDLE_SLEEP_MAX_SECONDS  # nothing queued
    assert fetcher.idle_wait(60.0, listening=True) == 60.0  # a longer poll interval stands
    tasks.enqueue(type="other", run_after_utc=clock.now + timedelta(seconds=3))
    assert fetcher.idle_wait(0.5, listening=True) == pytest.approx(3.0)
    clock.advance(3)
    # Due work this worker found nothing of (another type, a limit, a pause): keep polling,
    # since nothing is announced when a limit frees up.
    assert fetcher.idle_wait(0.5, listening=True) == 0.5


def test_idle_wait_waits_only_for_claimable_tasks(db: Database) -> None:
    clock = ManualClock()
    fetcher = _fetcher(db, clock)
    tasks = TaskRepository(db, clock)
    first = tasks.enqueue(type="other", run_after_utc=clock.now + timedelta(seconds=30)).task
    tasks.enqueue(type="other", depends_on=[first.task_id])  # due, but waits for `first`
    assert fetcher.idle_wait(0.5, listening=True) == IDLE_SLEEP_MAX_SECONDS
    tasks.enqueue(type="other", run_after_utc=clock.now + timedelta(seconds=2))
    assert fetcher.idle_wait(0.5, listening=True) == pytest.approx(2.0)


def test_an_idle_worker_claims_only_when_work_is_announced_or_due(
    db: Database, records: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rounds = _spy(monkeypatch, LeaseRepository, "apply_and_claim")
    tasks = TaskRepository(db)
    worker = Worker(
        WorkerConfig(poll_interval=POLL, metrics_port=0, prefetch=0),
        registry=test_handlers(),
        db=db,
    )
    worker.start()
    try:
        assert worker.wait_ready(20)
        time.sleep(1.5)  # the back-off after start-up is over: fully idle
        before = len(rounds)
        time.sleep(2.0)
        # Polling every 0.1 s would be about 20 claims. (A shared PostgreSQL server can wake
        # it for other tests' tasks: NOTIFY channels are per database, not per schema.)
        assert len(rounds) - before <= 4

        started = time.monotonic()
        now_task = tasks.enqueue(type="t.noop").task
        wait_for_status(tasks, now_task.task_id, "completed", timeout=10)
        assert time.monotonic() - started < IDLE_SLEEP_MAX_SECONDS / 2  # announced

        time.sleep(1.0)
        delayed = tasks.enqueue(type="t.noop", run_after_utc=utcnow() + timedelta(seconds=1.5))
        done = wait_for_status(tasks, delayed.task.task_id, "completed", timeout=10)
        assert done.processing_started_utc is not None
        late = (done.processing_started_utc - delayed.task.run_after_utc).total_seconds()
        assert 0 <= late < 1.0  # slept until it was due, not until the re-check
    finally:
        worker.stop(grace=1, timeout=20)
