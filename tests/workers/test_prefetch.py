"""Prefetch must not hurt long tasks (issue 11 C).

Two worker processes and four "one-minute" GPU-style tasks, scaled down to 1.5 s each: with
the default prefetch they must finish as fast as with ``--prefetch 0``. A prefetch that did not
adapt would let the first worker claim all four (one running, three waiting behind it) while
the second worker idles: about twice as long.
"""

from __future__ import annotations

import time

import pytest

from queue_core.repositories import TaskRepository
from queue_core.schemas import TaskCreate
from tests.workers.conftest import Workers, wait_until

TASKS = 4
SECONDS = 1.5


def _drain_time(workers: Workers, tasks: TaskRepository, *args: str) -> float:
    procs = [workers.start("--concurrency", "1", "--poll-interval", "0.1", *args) for _ in range(2)]
    for proc in procs:
        proc.wait_ready()
    started = time.monotonic()
    created = tasks.enqueue_many(
        [TaskCreate(type="t.sleep", payload={"seconds": SECONDS}) for _ in range(TASKS)]
    )
    wait_until(
        lambda: all(tasks.get(t.task_id).status.value == "completed" for t in created),
        timeout=60,
        interval=0.05,
        what="the long tasks to finish",
    )
    elapsed = time.monotonic() - started
    for proc in procs:
        proc.signal_stop()
    for proc in procs:
        assert proc.wait(30) == 0, proc.output()
    runs_by_pid: dict[int, int] = {}
    for record in workers.events("start"):
        if record["task_id"] in {t.task_id for t in created}:
            runs_by_pid[record["pid"]] = runs_by_pid.get(record["pid"], 0) + 1
    assert sorted(runs_by_pid.values()) == [2, 2], runs_by_pid  # shared, two each
    return elapsed


@pytest.mark.slow
def test_long_tasks_are_not_prefetched_behind_each_other(
    workers: Workers, tasks: TaskRepository
) -> None:
    without = _drain_time(workers, tasks, "--prefetch", "0")
    default = _drain_time(workers, tasks)  # the default prefetch
    print(f"prefetch 0: {without:.2f} s, default prefetch: {default:.2f} s")  # shown with -s
    # Two rounds of 1.5 s either way; one task run in series more would add 1.5 s or more.
    assert default < without + SECONDS * 0.6
