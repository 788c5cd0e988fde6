"""Running handlers: outcomes of sync and async handlers, and the executor's slots.

The executor's behaviour inside a live worker (a slot fetching its own work, prefetch,
cancellation before start) is in the tests at the bottom, on both backends.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

import tests.workers.handlers as handlers
from queue_core.clock import Clock
from queue_core.database import Database
from queue_core.repositories import LeaseRepository, TaskRepository
from queue_core.schemas import TaskCreate
from tests.workers.conftest import wait_for_status, wait_until
from tests.workers.test_runtime import records as records
from tests.workers.test_runtime import run_burst, test_handlers
from workers import PermanentError, Registry, TaskContext, Worker, WorkerConfig
from workers.attempt import AttemptState
from workers.execution import AsyncRunner, Execution, Outcome, describe_error
from workers.fetcher import DurationStats, Fetcher

LIMIT = 1024


def _execution(func: Any, payload: Any = None, *, ctx: TaskContext | None = None) -> Execution:
    handler = Registry().register("t", func)
    return Execution(
        handler, payload or {}, ctx or TaskContext(task_id=1), result_limit_bytes=LIMIT
    )


def _outcome(func: Any, payload: Any = None) -> Outcome:
    return _execution(func, payload).run_sync()


@pytest.fixture
def runner() -> Any:
    loop = AsyncRunner()
    yield loop
    loop.close()


def test_outcomes() -> None:
    ok = _outcome(lambda p, ctx: {"echo": p, "task": ctx.task_id}, {"a": 1})
    assert ok.succeeded
    assert ok.result == {"echo": {"a": 1}, "task": 1}

    def boom(payload: Any) -> None:
        raise RuntimeError("boom")

    failed = _outcome(boom)
    assert (failed.kind, failed.error, failed.permanent) == ("failed", "RuntimeError: boom", False)
    assert isinstance(failed.exception, RuntimeError)

    def permanent(payload: Any) -> None:
        raise PermanentError("never")

    assert _outcome(permanent).permanent

    too_big = _outcome(lambda p: "x" * (LIMIT + 1))
    assert "the limit is 1024" in (too_big.error or "")

    async def coro() -> None:
        return None

    awaitable = _outcome(lambda p: coro())
    assert "declare it `async def`" in (awaitable.error or "")

    def exits(payload: Any) -> None:
        raise SystemExit(3)

    assert _outcome(exits).error == "SystemExit: 3"


def test_a_result_that_is_not_json_is_a_permanent_failure() -> None:
    """Issue 12 item 5: a `set` result was retried 5 times; it cannot become storable."""
    not_json = _outcome(lambda p: {1, 2})
    assert not_json.kind == "failed"
    assert "not JSON-serialisable" in (not_json.error or "")
    assert not_json.permanent


def test_async_handlers_run_on_one_loop_and_can_be_cancelled(runner: AsyncRunner) -> None:
    async def echo(payload: Any) -> Any:
        await asyncio.sleep(0)
        return payload

    assert runner.run(_execution(echo, {"x": 1})).result == {"x": 1}

    started = threading.Event()

    async def forever(payload: Any) -> None:
        started.set()
        await asyncio.sleep(60)

    execution = _execution(forever)
    outcomes: list[Outcome] = []
    thread = threading.Thread(target=lambda: outcomes.append(runner.run(execution)))
    thread.start()
    assert started.wait(5)
    runner.cancel(execution)
    thread.join(5)
    assert [o.kind for o in outcomes] == ["interrupted"]


def test_async_handler_stopped_before_it_starts_is_cancelled(runner: AsyncRunner) -> None:
    async def never(payload: Any) -> None:
        await asyncio.sleep(60)

    ctx = TaskContext(task_id=1)
    ctx._request_cancel()
    assert runner.run(_execution(never, ctx=ctx)).kind == "interrupted"


def test_describe_error_cuts_long_messages() -> None:
    assert describe_error(ValueError()) == "ValueError"
    assert len(describe_error(ValueError("x" * 10_000))) == 4000


def test_duration_average_follows_recent_runs() -> None:
    stats = DurationStats(weight=0.5)
    assert stats.average("t") is None
    stats.observe("t", 1.0)
    stats.observe("t", 0.0)
    assert stats.average("t") == 0.5


def detached_fetcher(
    types: list[str],
    prefetch: int = 10,
    concurrency: int = 1,
    *,
    leases: LeaseRepository | None = None,
    clock: Clock | None = None,
) -> Fetcher:
    """A Fetcher without a completer, metrics or log: enough for its plans (the prefetch
    plan; with ``leases`` and ``clock``, the idle wait)."""
    return Fetcher(
        config=WorkerConfig(prefetch=prefetch, concurrency=concurrency),
        worker_id="w",
        types=types,
        registry=Registry(),
        completer=None,  # type: ignore[arg-type]  # not used by the plans
        leases=leases,  # type: ignore[arg-type]
        metrics=None,  # type: ignore[arg-type]
        clock=clock,  # type: ignore[arg-type]
        log=None,  # type: ignore[arg-type]
    )


def test_prefetch_plan_adapts_to_each_types_average_duration() -> None:
    fetcher = detached_fetcher(["gpu", "quick", "new"])
    assert fetcher.prefetch_plan() == (0, [])  # nothing measured yet: no prefetch
    fetcher.durations.observe("gpu", 60.0)
    assert fetcher.prefetch_plan() == (0, [])  # long tasks are never prefetched
    fetcher.durations.observe("quick", 0.001)
    assert fetcher.prefetch_plan() == (10, ["quick"])  # only the short type, the full prefetch
    fetcher.durations.observe("new", 0.02)
    assert fetcher.prefetch_plan() == (2, ["new", "quick"])  # 2 x 20 ms fit the 50 ms budget
    assert detached_fetcher(["quick"], prefetch=0).prefetch_plan() == (0, [])
    wide = detached_fetcher(["new"], concurrency=4)
    wide.durations.observe("new", 0.02)
    assert wide.prefetch_plan() == (10, ["new"])  # spread over 4 slots: the budget is 4 x 50 ms


# --- inside a worker ---


def test_not_json_result_fails_at_once_in_a_worker(db: Database) -> None:
    tasks = TaskRepository(db)
    bad = tasks.enqueue(type="t.bad_result", max_attempts=5).task
    run_burst(db)
    failed = tasks.get(bad.task_id)
    assert (failed.status.value, failed.attempts) == ("failed", 1)
    assert "not JSON-serialisable" in (failed.error_message or "")


def test_at_concurrency_1_a_sync_handler_runs_on_the_thread_that_claimed_it(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    fetching: set[str] = set()
    fetch = Fetcher.fetch

    def traced(self: Fetcher, free: int) -> Any:
        fetching.add(threading.current_thread().name)
        return fetch(self, free)

    monkeypatch.setattr(Fetcher, "fetch", traced)
    tasks = TaskRepository(db)
    ids = [t.task_id for t in tasks.enqueue_many([TaskCreate(type="t.thread")] * 30)]
    run_burst(db, concurrency=1)
    ran_on = {tasks.get(i).result["thread"] for i in ids}  # type: ignore[index]
    assert ran_on == fetching  # one thread claimed and ran every task: no hand-off
    assert len(ran_on) == 1
    assert ran_on != {threading.current_thread().name}


def _claim_sizes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    sizes: list[int] = []
    fetch = Fetcher.fetch

    def traced(self: Fetcher, free: int) -> Any:
        attempts = fetch(self, free)
        if attempts:
            sizes.append(len(attempts))
        return attempts

    monkeypatch.setattr(Fetcher, "fetch", traced)
    return sizes


@pytest.mark.parametrize("prefetch", [0, 8])
def test_prefetch_claims_short_tasks_beyond_the_free_slots(
    db: Database, monkeypatch: pytest.MonkeyPatch, prefetch: int
) -> None:
    sizes = _claim_sizes(monkeypatch)
    tasks = TaskRepository(db)
    ids = [t.task_id for t in tasks.enqueue_many([TaskCreate(type="t.noop")] * 40)]
    run_burst(db, concurrency=1, prefetch=prefetch)
    assert {tasks.get(i).status.value for i in ids} == {"completed"}
    assert sizes[0] == 1  # a type never seen is not prefetched
    assert max(sizes) == 1 + prefetch  # then a round claims the free slot plus the prefetch


def test_a_prefetched_task_cancelled_before_it_starts_never_starts(
    db: Database, records: Path
) -> None:
    tasks = TaskRepository(db)
    worker = Worker(
        WorkerConfig(concurrency=1, prefetch=4, lease_seconds=1.0, poll_interval=0.05),
        registry=test_handlers(),
        db=db,
    )
    warm = tasks.enqueue(type="t.stamp").task  # teaches the worker that t.stamp is short
    worker.start()
    try:
        wait_for_status(tasks, warm.task_id, "completed", timeout=15)
        blocker, later = tasks.enqueue_many(
            [TaskCreate(type="t.sync_wait", payload={"seconds": 30}), TaskCreate(type="t.stamp")]
        )
        wait_until(
            lambda: [r for r in handlers.read_records(records) if r["event"] == "start"],
            what="the blocker to start",
        )
        # "later" was prefetched in the same round: leased, waiting behind the blocker.
        assert tasks.get(later.task_id).status.value == "leased"
        assert tasks.cancel(later.task_id).task.cancel_requested
        wait_until(
            lambda: any(a.ctx.cancel_requested for a in worker.table.in_state(AttemptState.QUEUED)),
            what="the lease keeper to hear of the cancellation",
        )
        tasks.cancel(blocker.task_id)  # the single slot frees; "later" is next in line
        wait_for_status(tasks, later.task_id, "cancelled", timeout=20)
        wait_for_status(tasks, blocker.task_id, "cancelled", timeout=20)
        assert later.task_id not in {r["task_id"] for r in handlers.read_records(records)}
    finally:
        worker.stop(grace=1, timeout=20)
