"""Eight processes enqueue with overlapping idempotency keys at the same moment: exactly one task
per key, every caller gets that task, and no busy/unavailable error reaches a caller.

Processes are started with ``spawn`` (the only method Windows has). This module imports
nothing heavy at the top, so each child starts quickly.
"""

from __future__ import annotations

import multiprocessing
import queue as queue_module
import random
from typing import Any

import pytest

PROCESSES = 8
KEYS = 24
START_TIMEOUT = 120.0
RESULT_TIMEOUT = 120.0


def enqueue_keys(url: str, seed: int, ready: Any, start: Any, results: Any) -> None:
    """Child process: enqueue every key once, in a random order, and report what came back."""
    outcome: dict[str, Any] = {"seed": seed, "tasks": {}, "created": 0, "errors": []}
    try:
        from queue_core.database import Database
        from queue_core.repositories import TaskRepository

        db = Database(url)
        tasks = TaskRepository(db)
        order = list(range(KEYS))
        random.Random(seed).shuffle(order)
        ready.put(seed)
        if not start.wait(START_TIMEOUT):
            raise TimeoutError("never told to start")
        for n in order:
            try:
                result = tasks.enqueue(type="race", payload={"key": n}, idempotency_key=f"key-{n}")
            except Exception as exc:  # reported, not raised: the parent asserts on them
                outcome["errors"].append(f"{type(exc).__name__}: {exc}")
                continue
            outcome["tasks"][n] = result.task.task_id
            outcome["created"] += int(result.created)
        db.dispose()
    except BaseException as exc:
        outcome["errors"].append(f"{type(exc).__name__}: {exc}")
    results.put(outcome)


@pytest.mark.slow
def test_processes_racing_on_keys_create_one_task_per_key(db_url: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    ready, results = ctx.Queue(), ctx.Queue()
    start = ctx.Event()
    children = [
        ctx.Process(target=enqueue_keys, args=(db_url, seed, ready, start, results))
        for seed in range(PROCESSES)
    ]
    for child in children:
        child.start()
    try:
        for _ in children:  # everyone has imported and connected: start together
            ready.get(timeout=START_TIMEOUT)
        start.set()
        outcomes = [results.get(timeout=RESULT_TIMEOUT) for _ in children]
    except queue_module.Empty:
        pytest.fail("a child process did not report in time")
    finally:
        for child in children:
            child.join(timeout=30)
            if child.is_alive():
                child.kill()

    errors = [e for o in outcomes for e in o["errors"]]
    assert errors == []  # no SQLITE_BUSY, no DatabaseUnavailable, no IntegrityError
    assert sum(o["created"] for o in outcomes) == KEYS
    for n in range(KEYS):
        ids = {o["tasks"][n] for o in outcomes}
        assert len(ids) == 1, f"key-{n} maps to several tasks: {ids}"

    from queue_core.database import Database
    from queue_core.repositories import TaskRepository

    with Database(db_url) as db:
        stored = TaskRepository(db).list(type="race", limit=1000)
    assert len(stored) == KEYS
    assert sorted(t.idempotency_key or "" for t in stored) == sorted(
        f"key-{n}" for n in range(KEYS)
    )
    by_key = {t.idempotency_key: t for t in stored}
    for n in range(KEYS):
        task = by_key[f"key-{n}"]
        assert task.payload == {"key": n}
        assert {o["tasks"][n] for o in outcomes} == {task.task_id}
