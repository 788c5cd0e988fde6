"""Child-process bodies for the maintenance tests (spawned: they must be importable)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from queue_core.database import Database
from queue_core.errors import DatabaseUnavailable
from queue_core.maintenance import MaintenanceLeases, MaintenanceScheduler
from queue_core.repositories import LeaseRepository, TaskRepository
from queue_core.schemas import TaskCreate
from queue_core.settings import QueueSettings


def write_tasks(url: str, writer_no: int, stop: Any, ready: Any, results: Any) -> None:
    """Enqueue batches (and claim and complete some) until told to stop."""
    db = Database(url)
    tasks = TaskRepository(db)
    leases = LeaseRepository(db)
    committed = 0
    busy = 0
    ready.put(writer_no)
    try:
        n = 0
        while not stop.is_set():
            specs = [
                TaskCreate(type="bk", payload={"w": writer_no, "n": n + i, "pad": "x" * 200})
                for i in range(5)
            ]
            n += 5
            try:
                committed += len(tasks.enqueue_many(specs))
                claimed = leases.claim(f"writer-{writer_no}", ["bk"], limit=2)
                leases.complete_many([(c.lease, {"n": c.payload["n"]}) for c in claimed])
            except DatabaseUnavailable:
                busy += 1
        results.put((writer_no, committed, busy))
    finally:
        db.dispose()


def churn(url: str, worker_no: int, stop: Any, ready: Any, results: Any) -> None:
    """Producer and worker at once: enqueue, claim (old live tasks too) and complete."""
    db = Database(url)
    tasks = TaskRepository(db)
    leases = LeaseRepository(db)
    enqueued: list[int] = []
    completed: list[int] = []
    lost: list[int] = []
    ready.put(worker_no)
    try:
        while not stop.is_set():
            try:
                batch = tasks.enqueue_many(
                    [TaskCreate(type="churn", payload={"w": worker_no}) for _ in range(10)]
                )
                enqueued += [t.task_id for t in batch]
                claimed = leases.claim(f"churn-{worker_no}", ["churn", "live"], limit=10)
                lost_now = leases.complete_many([(c.lease, None) for c in claimed])
                lost += lost_now
                completed += [c.task_id for c in claimed if c.task_id not in lost_now]
            except DatabaseUnavailable:
                continue
        results.put((worker_no, enqueued, completed, lost))
    finally:
        db.dispose()


def contend(url: str, proc_no: int, rounds: int, threads: int, barrier: Any, results: Any) -> None:
    """Every thread of every process tries to take the same lease at once, round after round."""
    from datetime import timedelta

    from queue_core.clock import utcnow

    db = Database(url)
    won: list[tuple[int, str]] = []
    lock = threading.Lock()

    def attempt(thread_no: int) -> None:
        leases = MaintenanceLeases(db)
        holder = f"p{proc_no}-t{thread_no}"
        for round_no in range(rounds):
            barrier.wait(timeout=60)
            got = False
            for _ in range(50):
                try:
                    got = leases.try_acquire(
                        f"job-{round_no}", holder, utcnow() + timedelta(seconds=600)
                    )
                    break
                except DatabaseUnavailable:
                    continue
            if got:
                with lock:
                    won.append((round_no, holder))

    workers = [threading.Thread(target=attempt, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    results.put(won)
    db.dispose()


def _retry(call: Callable[[], object], attempts: int = 20) -> None:
    """A worker retries its outcome writes while the database is busy."""
    for _ in range(attempts - 1):
        try:
            call()
            return
        except DatabaseUnavailable:
            continue
    call()


def soak_worker(
    url: str, worker_no: int, stop: Any, settings_env: dict[str, Any], results: Any
) -> None:
    """Claim and complete until stopped, running the maintenance scheduler in the loop,
    the way the worker runtime does."""
    db = Database(url, QueueSettings(**settings_env))
    leases = LeaseRepository(db)
    scheduler = MaintenanceScheduler(db)
    done = 0
    runs: list[str] = []
    idle_rounds = 0
    try:
        while True:
            try:
                claimed = leases.claim(f"soak-{worker_no}", ["soak"], limit=50)
                if claimed:
                    outcomes = [(c.lease, None) for c in claimed]
                    _retry(lambda: leases.complete_many(outcomes))  # noqa: B023 - called at once
                    done += len(claimed)
                    idle_rounds = 0
                else:
                    idle_rounds += 1
                    if stop.is_set() and idle_rounds > 3:
                        break
                    stop.wait(0.01)
            except DatabaseUnavailable:
                continue
            runs += [run.summary for run in scheduler.run_due() if run.name == "checkpoint"]
        results.put((worker_no, done, runs))
    finally:
        db.dispose()
