"""Flow control with real worker processes on both backends (CONTRACT §9): exactly one task per
due time with 3 workers, limits never exceeded at any instant or in any window, pause honoured,
dependencies ordered. Processes are spawned (``prismq-queue worker`` subprocesses, and
``multiprocessing`` spawn children for the bare scheduler race)."""

from __future__ import annotations

import itertools
import multiprocessing
import queue as queue_module
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from queue_core.clock import ManualClock, utcnow
from queue_core.database import Database
from queue_core.repositories import ScheduleRepository, TaskRepository, TypeRepository
from queue_core.scheduling import Cron, due_key
from queue_core.schemas import TaskCreate
from tests.workers.conftest import Workers, wait_until

FLOW = ("--import", "tests.flow.handlers")
START_TIMEOUT = 120.0
pytestmark = pytest.mark.slow


@pytest.fixture
def workers(db_url: str, tmp_path: Path) -> Any:
    started = Workers(db_url, tmp_path)
    yield started
    started.close()


def _max_overlap(spans: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    current = peak = 0
    for _, delta in events:  # an end sorts before a start at the same instant
        current += delta
        peak = max(peak, current)
    return peak


def _max_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    best, first = 0, 0
    for last, at in enumerate(times):
        while at - times[first] >= window:
            first += 1
        best = max(best, last - first + 1)
    return best


# --- exactly one task per due time ---


def race_schedules(url: str, ready: Any, start: Any, results: Any) -> None:
    """Child: run the scheduler round over and over, with no election at all."""
    out: dict[str, Any] = {"errors": []}
    try:
        from queue_core.database import Database
        from queue_core.repositories import ScheduleRepository

        db = Database(url)
        schedules = ScheduleRepository(db)
        ready.put(1)
        if not start.wait(START_TIMEOUT):
            raise TimeoutError("never told to start")
        for _ in range(5):
            schedules.enqueue_due()
        db.dispose()
    except BaseException as exc:
        out["errors"].append(f"{type(exc).__name__}: {exc}")
    results.put(out)


def test_three_unelected_runners_enqueue_each_due_time_once(db_url: str) -> None:
    """The database guard alone (idempotency key + compare-and-set), without the election."""
    past = utcnow() - timedelta(minutes=90)
    with Database(db_url) as db:
        ScheduleRepository(db, ManualClock(past)).add(
            name="race", type="flow.tick", cron="* * * * *", catch_up="all"
        )
    ctx = multiprocessing.get_context("spawn")
    ready, results = ctx.Queue(), ctx.Queue()
    start = ctx.Event()
    children = [ctx.Process(target=race_schedules, args=(db_url, ready, start, results))]
    children += [ctx.Process(target=race_schedules, args=(db_url, ready, start, results))]
    children += [ctx.Process(target=race_schedules, args=(db_url, ready, start, results))]
    for child in children:
        child.start()
    try:
        for _ in children:
            ready.get(timeout=START_TIMEOUT)
        start.set()
        outcomes = [results.get(timeout=START_TIMEOUT) for _ in children]
    except queue_module.Empty:
        pytest.fail("a child process did not report in time")
    finally:
        for child in children:
            child.join(timeout=30)
            if child.is_alive():
                child.kill()
    assert [e for o in outcomes for e in o["errors"]] == []
    with Database(db_url) as db:
        tasks = TaskRepository(db).list(type="flow.tick", limit=1000)
    keys = Counter(t.idempotency_key for t in tasks)
    assert all(count == 1 for count in keys.values()), keys.most_common(3)
    # catch-up "all" enqueues the last 100 missed times: the last 90 minutes, each once.
    expected = list(
        itertools.islice(
            itertools.takewhile(lambda t: t > past, Cron("* * * * *").times_up_to(utcnow())), 100
        )
    )
    assert {due_key("race", t) for t in expected if t <= utcnow() - timedelta(seconds=5)} <= set(
        keys
    )
    assert len(tasks) <= len(expected) + 1
    assert {t.schedule for t in tasks} == {"race"}


def test_three_workers_one_task_per_due_time_and_code_schedules(
    workers: Workers, db_url: str
) -> None:
    past = utcnow() - timedelta(minutes=30)
    with Database(db_url) as db:
        ScheduleRepository(db, ManualClock(past)).add(
            name="every-minute", type="flow.tick", cron="* * * * *", catch_up="all"
        )
    procs = [workers.start(*FLOW, "--concurrency", "2") for _ in range(3)]
    for proc in procs:  # signal handlers are in place once a worker has started
        proc.wait_ready()
    with Database(db_url) as db:
        tasks = TaskRepository(db)
        wait_until(lambda: len(workers.events("tick")) >= 30, timeout=90, what="30 scheduled ticks")
        declared = ScheduleRepository(db).get("flow.daily")  # from @task(cron=...)
        assert (declared.cron, declared.timezone, declared.source) == (
            "0 6 * * *",
            "Europe/Prague",
            "code",
        )
        for proc in procs:
            proc.signal_stop()
        for proc in procs:
            assert proc.wait(60) == 0, proc.output()
        ticks = tasks.list(type="flow.tick", limit=1000)
    keys = Counter(t.idempotency_key for t in ticks)
    assert keys
    assert all(n == 1 for n in keys.values()), keys.most_common(3)
    assert len(keys) >= 30
    runs = Counter(r["task_id"] for r in workers.events("tick"))
    assert all(n == 1 for n in runs.values())


# --- limits ---


def test_max_running_never_exceeded_across_worker_processes(workers: Workers, db_url: str) -> None:
    with Database(db_url) as db:
        TypeRepository(db).set_limits("flow.limited", max_running=3)
        TaskRepository(db).enqueue_many(
            [TaskCreate(type="flow.limited", payload={"sleep": 0.05}) for _ in range(40)]
            + [TaskCreate(type="flow.free") for _ in range(20)]
        )
    procs = [workers.start(*FLOW, "--burst", "--concurrency", "3") for _ in range(4)]
    for proc in procs:
        assert proc.wait(180) == 0, proc.output()
    spans = workers.events("span")
    limited = [(r["start"], r["end"]) for r in spans if r["task_id"] <= 40]
    assert len(limited) == 40
    assert _max_overlap(limited) <= 3
    assert len(spans) == 60  # the free type ran beside it


def test_rate_never_exceeded_in_any_window(workers: Workers, db_url: str) -> None:
    with Database(db_url) as db:
        TypeRepository(db).set_limits("flow.limited", rate={"count": 4, "per_seconds": 1.0})
        created = TaskRepository(db).enqueue_many(
            [TaskCreate(type="flow.limited", payload={"sleep": 0}) for _ in range(14)]
        )
        procs = [
            workers.start(*FLOW, "--concurrency", "2", "--poll-interval", "0.05") for _ in range(3)
        ]
        for proc in procs:
            proc.wait_ready()
        tasks = TaskRepository(db)
        wait_until(
            lambda: tasks.stats().completed_tasks == len(created), timeout=120, what="all done"
        )
        for proc in procs:
            proc.signal_stop()
        for proc in procs:
            assert proc.wait(60) == 0, proc.output()
        claimed = [tasks.get(t.task_id).processing_started_utc for t in created]
    times = [at.timestamp() for at in claimed if at is not None]
    assert len(times) == 14
    assert _max_in_window(times, 1.0) <= 4
    assert max(times) - min(times) >= 3.0  # 14 claims at 4 a second take three windows


def test_pause_is_honoured_by_running_workers(workers: Workers, db_url: str) -> None:
    with Database(db_url) as db:
        types, tasks = TypeRepository(db), TaskRepository(db)
        types.pause("flow.free")
        paused = tasks.enqueue(type="flow.free").task.task_id
        procs = [workers.start(*FLOW, "--poll-interval", "0.1") for _ in range(2)]
        for proc in procs:
            proc.wait_ready()
        marker = tasks.enqueue(type="flow.tick").task.task_id
        wait_until(lambda: tasks.get(marker).status.value == "completed", timeout=60)
        assert tasks.get(paused).status.value == "queued"
        types.resume("flow.free")
        wait_until(lambda: tasks.get(paused).status.value == "completed", timeout=60)
        # Dependencies across processes: each step starts after the one it depends on ended.
        first = tasks.enqueue(type="flow.free").task.task_id
        second = tasks.enqueue(type="flow.free", depends_on=[first]).task.task_id
        third = tasks.enqueue(type="flow.free", depends_on=[second]).task.task_id
        wait_until(lambda: tasks.get(third).status.value == "completed", timeout=60)
        for proc in procs:
            proc.signal_stop()
        for proc in procs:
            assert proc.wait(60) == 0, proc.output()
    spans = {r["task_id"]: r for r in workers.events("span")}
    assert spans[first]["end"] <= spans[second]["start"]
    assert spans[second]["end"] <= spans[third]["start"]
