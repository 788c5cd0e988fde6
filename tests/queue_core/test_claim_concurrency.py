"""Eight processes claim and complete 5,000 tasks: each task is completed exactly once, and no
busy error (SQLITE_BUSY, surfaced as DatabaseUnavailable) ever reaches a caller."""

from __future__ import annotations

import multiprocessing
import random
import time
from collections import Counter

import pytest
from sqlalchemy import func, select

from queue_core.database import Database
from queue_core.errors import DatabaseUnavailable
from queue_core.repositories import LeaseRepository, TaskRepository
from queue_core.repositories._common import LOGS, TASKS
from queue_core.schemas import TaskCreate

PROCESSES = 8
TASKS_TOTAL = 5_000
STRATEGIES = ["fifo", "lifo", "priority", "weighted_random"]


def claim_and_complete(db_url: str, worker_id: str, strategy: str) -> tuple[list[int], str | None]:
    """Runs in a spawned process: drain the queue; return the ids completed and any error."""
    rng = random.Random(worker_id)
    done: list[int] = []
    db = Database(db_url)
    leases = LeaseRepository(db, rng=rng)
    try:
        empty_in_a_row = 0
        deadline = time.monotonic() + 120
        while empty_in_a_row < 3 and time.monotonic() < deadline:
            batch = leases.claim(
                worker_id, ["t"], limit=rng.randint(1, 8), lease_seconds=300, strategy=strategy
            )
            if not batch:
                empty_in_a_row += 1
                time.sleep(0.01)
                continue
            empty_in_a_row = 0
            lost = leases.complete_many([(task.lease, worker_id) for task in batch])
            if lost:
                return done, f"lost leases {lost}"
            done.extend(task.task_id for task in batch)
        return done, None
    except DatabaseUnavailable as exc:
        return done, f"DatabaseUnavailable: {exc}"
    finally:
        db.dispose()


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_eight_processes_complete_each_task_exactly_once(db: Database, db_url: str) -> None:
    tasks = TaskRepository(db)
    for start in range(0, TASKS_TOTAL, 1000):
        tasks.enqueue_many(
            [
                TaskCreate(type="t", priority=1 + (n % 7) * 10, payload={"n": n})
                for n in range(start, start + 1000)
            ]
        )
    ctx = multiprocessing.get_context("spawn")
    args = [(db_url, f"proc-{n}", STRATEGIES[n % len(STRATEGIES)]) for n in range(PROCESSES)]
    # close() + join(), not the context manager's terminate(): a SIGTERM landing in a child
    # while it writes its coverage data can leave join() waiting forever.
    pool = ctx.Pool(PROCESSES)
    try:
        results = pool.starmap(claim_and_complete, args)
    finally:
        pool.close()
        pool.join()

    errors = [error for _, error in results if error]
    assert not errors
    completed = Counter(task_id for ids, _ in results for task_id in ids)
    assert len(completed) == TASKS_TOTAL
    assert set(completed.values()) == {1}, "a task was completed twice"
    # Spawned processes start at different times on a loaded machine, so one may find the
    # queue drained; the run is concurrent as long as several processes shared the work.
    assert sum(1 for ids, _ in results if ids) >= 2, "the work was not shared"

    with db.read() as conn:
        statuses = dict(
            conn.execute(select(TASKS.c.status, func.count()).group_by(TASKS.c.status)).all()
        )
        attempts = conn.execute(select(func.max(TASKS.c.attempts))).scalar_one()
        completions = dict(
            conn.execute(
                select(LOGS.c.message, func.count())
                .where(LOGS.c.message.in_(["leased", "completed"]))
                .group_by(LOGS.c.message)
            ).all()
        )
        # Each task was completed by the worker that claimed it.
        holders = conn.execute(select(TASKS.c.locked_by, TASKS.c.result)).all()
    assert statuses == {"completed": TASKS_TOTAL}
    assert attempts == 1  # no lease ever expired, so no task ran twice
    assert completions == {"leased": TASKS_TOTAL, "completed": TASKS_TOTAL}
    assert all(locked_by == result for locked_by, result in holders)
