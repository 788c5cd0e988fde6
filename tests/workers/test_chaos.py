"""Chaos: SIGKILL and restart workers at random (seeded) while 1,000 tasks drain.

Nothing may be lost or stuck, and every duplicate run must be explained by a kill: a task
runs more than once only when a killed worker had started it, and a worker that was never
killed runs no task twice. A killed worker can have run a whole fetched round (its slots plus
its prefetch) whose outcomes were not written yet: that is the duplicate bound.
"""

from __future__ import annotations

import random
import time
from collections import Counter, defaultdict

import pytest

from queue_core.repositories import TaskRepository
from queue_core.schemas import TaskCreate
from tests.workers.conftest import WorkerProcess, Workers, wait_until
from workers.defaults import PREFETCH_DEFAULT

TASKS = 1000
WORKERS = 3
CONCURRENCY = 4
MAX_KILLS = 3
SEED = 20240611


@pytest.mark.slow
def test_kill_and_restart_workers_while_tasks_drain(
    workers: Workers, tasks: TaskRepository
) -> None:
    rng = random.Random(SEED)
    created = tasks.enqueue_many(
        [
            TaskCreate(type="t.record", payload={"n": i, "sleep": 0.004}, max_attempts=20)
            for i in range(TASKS)
        ]
    )
    args = ("--concurrency", str(CONCURRENCY), "--lease-seconds", "2", "--poll-interval", "0.2")
    running: list[WorkerProcess] = [workers.start(*args) for _ in range(WORKERS)]
    killed: set[int] = set()

    def remaining() -> int:
        stats = tasks.stats()
        return stats.queued_tasks + stats.leased_tasks

    deadline = time.monotonic() + 90
    while len(killed) < MAX_KILLS and time.monotonic() < deadline:
        time.sleep(rng.uniform(0.2, 0.6))
        if remaining() == 0:
            break
        victim = running.pop(rng.randrange(len(running)))
        if not workers.events("run"):
            running.append(victim)  # let work begin before the first kill
            continue
        victim.kill()
        killed.add(victim.pid)
        running.append(workers.start(*args))

    wait_until(lambda: remaining() == 0, timeout=90, interval=0.2, what="the queue to drain")
    for worker in running:
        worker.wait_ready()
        worker.signal_stop()
    for worker in running:
        assert worker.wait(30) == 0, worker.output()

    stats = tasks.stats()
    assert (stats.completed_tasks, stats.failed_tasks, stats.leased_tasks) == (TASKS, 0, 0)
    assert killed, "the test killed nothing"

    runs = workers.events("run")
    per_task = Counter(r["task_id"] for r in runs)
    assert set(per_task) == {t.task_id for t in created}  # nothing lost
    by_survivors: dict[int, int] = defaultdict(int)
    for r in runs:
        if r["pid"] not in killed:
            by_survivors[r["task_id"]] += 1
    assert max(by_survivors.values()) == 1  # no duplicate without a kill
    duplicates = sum(count - 1 for count in per_task.values())
    print(f"chaos: {len(killed)} kill(s), {duplicates} duplicate run(s)")  # shown with -s
    # A killed worker can only have had one fetched round in flight: its slots and prefetch.
    assert duplicates <= len(killed) * (CONCURRENCY + PREFETCH_DEFAULT)
    for task_id, count in per_task.items():
        if count > 1:
            assert {r["pid"] for r in runs if r["task_id"] == task_id} & killed
    attempts = {t.task_id: tasks.get(t.task_id).attempts for t in created[:50]}
    assert all(attempts[task_id] >= per_task[task_id] for task_id in attempts)
