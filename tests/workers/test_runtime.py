"""The worker runtime in this process (``Worker.run`` / ``start`` / ``stop``), on both backends.

The same behaviour with real worker processes and signals is in test_processes.py; these
tests cover what is easier to observe from inside: the back-off schedule under a manual
clock, time limits, lost leases, metrics, and embedding.
"""

from __future__ import annotations

import signal
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

import tests.workers.handlers as handlers
from queue_core.clock import ManualClock
from queue_core.database import Database
from queue_core.repositories import LeaseRepository, TaskRepository, WorkerRepository
from queue_core.schemas import TaskCreate
from tests.workers.conftest import wait_for_status, wait_until
from workers import Registry, Worker, WorkerConfig, default_registry
from workers.runtime import new_worker_id


def test_handlers() -> Registry:
    """A registry with the test handlers only."""
    registry = Registry()
    for handler in default_registry:
        if handler.func.__module__ == handlers.__name__:
            registry.register(handler.name, handler.func)
    return registry


test_handlers.__test__ = False  # type: ignore[attr-defined]


@pytest.fixture
def records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "records"
    directory.mkdir()
    monkeypatch.setenv(handlers.RECORD_DIR_ENV, str(directory))
    return directory


def run_burst(db: Database, clock: object = None, **options: object) -> Worker:
    config = WorkerConfig(burst=True, poll_interval=0.05, **options)  # type: ignore[arg-type]
    kwargs = {"clock": clock} if clock is not None else {}
    worker = Worker(config, registry=test_handlers(), db=db, **kwargs)  # type: ignore[arg-type]
    worker.run(install_signal_handlers=False)
    return worker


def test_burst_runs_every_outcome_kind(db: Database, records: Path) -> None:
    tasks = TaskRepository(db)
    noops = tasks.enqueue_many([TaskCreate(type="t.noop") for _ in range(20)])
    echo = tasks.enqueue(type="t.echo_async", payload={"n": 1}).task
    permanent = tasks.enqueue(type="t.permanent").task
    bad = tasks.enqueue(type="t.bad_result", max_attempts=1).task
    logged = tasks.enqueue(type="t.log").task
    unknown = tasks.enqueue(type="t.nobody-handles-this").task

    worker = run_burst(db, concurrency=3)

    assert {tasks.get(t.task_id).status.value for t in noops} == {"completed"}
    assert tasks.get(echo.task_id).result == {"echo": {"n": 1}}
    failed = tasks.get(permanent.task_id)
    assert (failed.status.value, failed.attempts) == ("failed", 1)
    assert failed.error_message == "PermanentError: this cannot work"
    not_json = tasks.get(bad.task_id)
    assert not_json.status.value == "failed"
    assert "not JSON-serialisable" in (not_json.error_message or "")
    assert tasks.get(unknown.task_id).status.value == "queued"  # no handler: never claimed

    messages = [(log.level, log.message) for log in tasks.logs(logged.task_id)]
    assert ("INFO", "hello world") in messages
    assert ("ERROR", "caught it") in messages
    assert not any("not stored" in m for _, m in messages)
    assert messages[-1] == ("INFO", "completed")  # handler records land before the outcome

    sample = worker.metrics.registry.get_sample_value
    assert sample("prismq_worker_tasks_completed_total", {"type": "t.noop"}) == 20
    assert sample("prismq_worker_tasks_failed_total", {"type": "t.permanent"}) == 1
    assert sample("prismq_worker_tasks_claimed_total", {"type": "t.noop"}) == 20
    assert sample("prismq_worker_task_run_seconds_count", {"type": "t.noop"}) == 20
    assert (sample("prismq_worker_claim_seconds_count") or 0) >= 1
    [info] = [w for w in WorkerRepository(db).list() if w.worker_id == worker.worker_id]
    assert info.status == "stale"
    assert info.stopped_at_utc is not None


def test_retry_back_off_schedule_under_a_manual_clock(db: Database, records: Path) -> None:
    clock = ManualClock()
    tasks = TaskRepository(db, clock)
    task_id = tasks.enqueue(type="t.flaky", payload={"fail_times": 3}, max_attempts=4).task.task_id

    delays = []
    for attempt in (1, 2, 3):
        run_burst(db, clock=clock)
        task = tasks.get(task_id)
        assert (task.status.value, task.attempts) == ("queued", attempt)
        assert task.error_message == f"RuntimeError: flaky failure on attempt {attempt}"
        delays.append((task.run_after_utc - clock.now).total_seconds())
        run_burst(db, clock=clock)  # not due yet: nothing runs
        assert tasks.get(task_id).attempts == attempt
        clock.advance(delays[-1] + 0.001)

    # CONTRACT §4: min(1 s * 2^(attempts-1), 300 s), with up to 10% jitter.
    for delay, expected in zip(delays, (1.0, 2.0, 4.0), strict=True):
        assert expected * 0.9 <= delay <= expected * 1.1
    run_burst(db, clock=clock)
    done = tasks.get(task_id)
    assert (done.status.value, done.attempts, done.result) == ("completed", 4, {"attempt": 4})
    assert [r["attempt"] for r in handlers.read_records(records)] == [1, 2, 3, 4]


def test_time_limits_fail_the_attempt_and_free_the_slot(db: Database, records: Path) -> None:
    tasks = TaskRepository(db)
    hang = tasks.enqueue(
        type="t.hang", payload={"seconds": 2}, timeout_seconds=0.3, max_attempts=1
    ).task
    stuck = tasks.enqueue(type="t.async_wait", payload={"seconds": 30}, max_attempts=1).task
    worker = Worker(
        WorkerConfig(concurrency=1, poll_interval=0.05, task_timeout=0.3),
        registry=test_handlers(),
        db=db,
    )
    worker.start()
    try:
        for task in (hang, stuck):
            failed = wait_for_status(tasks, task.task_id, "failed", timeout=10)
            assert failed.error_message == "timed out after 0.3 s"
        # The hung thread still sleeps, yet the single slot already serves the next task.
        quick = tasks.enqueue(type="t.noop").task
        wait_for_status(tasks, quick.task_id, "completed", timeout=10)
        assert not [r for r in handlers.read_records(records) if r["event"] == "end"]
        wait_until(
            lambda: [r for r in handlers.read_records(records) if r["event"] == "end"],
            timeout=10,
            what="the hung handler to return",
        )
        assert tasks.get(hang.task_id).status.value == "failed"  # its late result is discarded
        assert tasks.get(hang.task_id).result is None
        cancelled = [r for r in handlers.read_records(records) if r["event"] == "cancelled"]
        assert [r["task_id"] for r in cancelled] == [stuck.task_id]  # the async one is cancelled
    finally:
        worker.stop(grace=1, timeout=20)
    assert worker.metrics.registry.get_sample_value(
        "prismq_worker_tasks_timed_out_total", {"type": "t.hang"}
    )


def test_a_handler_that_lost_its_lease_is_told_and_its_result_discarded(
    db: Database, records: Path
) -> None:
    tasks = TaskRepository(db)
    task_id = tasks.enqueue(type="t.sync_wait", payload={"seconds": 30}).task.task_id
    worker = Worker(
        WorkerConfig(lease_seconds=1.0, poll_interval=0.05), registry=test_handlers(), db=db
    )
    worker.start()
    try:
        wait_until(lambda: handlers.read_records(records), timeout=10, what="the handler to start")
        with db.write() as conn:  # as if the lease had expired and another worker claimed it
            conn.execute(
                text("UPDATE task_queue SET lease_token = lease_token + 100 WHERE id = :id"),
                {"id": task_id},
            )
        ended = wait_until(
            lambda: [r for r in handlers.read_records(records) if r["event"] == "end"],
            timeout=10,
            what="the handler to see its lease lost",
        )
        assert ended[0]["finished"] is False
        wait_until(
            lambda: worker.metrics.registry.get_sample_value(
                "prismq_worker_tasks_lease_lost_total", {"type": "t.sync_wait"}
            ),
            timeout=10,
            what="the result to be discarded",
        )
        task = tasks.get(task_id)
        assert (task.status.value, task.result) == ("leased", None)  # untouched by the loser
        wait_until(
            lambda: (
                "result discarded: the lease was lost"
                in [log.message for log in tasks.logs(task_id)]
            ),
            timeout=10,
            what="the discard to be noted in task_logs",
        )
    finally:
        worker.stop(grace=1, timeout=20)


def test_embedded_worker_installs_no_signal_handlers_and_releases_on_stop(
    db: Database, records: Path
) -> None:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    tasks = TaskRepository(db)
    worker = Worker(
        WorkerConfig(concurrency=2, poll_interval=0.05, metrics_port=0),
        registry=test_handlers(),
        db=db,
    )
    worker.start()
    try:
        assert {sig: signal.getsignal(sig) for sig in before} == before
        assert worker.wait_ready(1)
        quick = tasks.enqueue(type="t.noop").task
        wait_for_status(tasks, quick.task_id, "completed", timeout=10)
        assert worker.metrics.address is not None
        host, port = worker.metrics.address
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as response:
            body = response.read().decode()
        assert 'prismq_worker_tasks_completed_total{type="t.noop"} 1.0' in body
        assert f'prismq_worker_info{{worker_id="{worker.worker_id}"}} 1.0' in body
        long = tasks.enqueue(type="t.sync_wait", payload={"seconds": 30}).task
        wait_until(lambda: worker.running == 1, timeout=10, what="the long task to start")
    finally:
        worker.stop(grace=0.2, timeout=20)
    released = tasks.get(long.task_id)
    assert (released.status.value, released.attempts, released.locked_by) == ("queued", 0, None)
    assert "released" in [log.message for log in tasks.logs(long.task_id)]
    [info] = [w for w in WorkerRepository(db).list() if w.worker_id == worker.worker_id]
    assert info.stopped_at_utc is not None


def test_a_restarted_worker_id_recovers_what_it_held(db: Database, records: Path) -> None:
    tasks = TaskRepository(db)
    task_id = tasks.enqueue(type="t.record").task.task_id
    [claimed] = LeaseRepository(db).claim("fixed-id", ["t.record"], lease_seconds=300)
    assert claimed.attempt == 1
    run_burst(db, worker_id="fixed-id")
    task = tasks.get(task_id)
    assert (task.status.value, task.attempts) == ("completed", 2)


def test_configuration_is_checked() -> None:
    for bad in (
        {"concurrency": 0},
        {"lease_seconds": 0.1},
        {"poll_interval": 0},
        {"shutdown_grace": -1},
        {"task_timeout": 0},
        {"sweep_interval": 0},
        {"metrics_port": 70000},
        {"worker_id": " "},
        {"strategy": "random"},
    ):
        with pytest.raises(ValueError):
            WorkerConfig(**bad)
    assert WorkerConfig(lease_seconds=2).effective_sweep_interval == 2
    assert WorkerConfig(sweep_interval=7).effective_sweep_interval == 7
    assert new_worker_id() != new_worker_id()


def test_a_worker_without_handlers_refuses_to_start(db: Database) -> None:
    with pytest.raises(ValueError, match="no task handlers"):
        Worker(WorkerConfig(), registry=Registry(), db=db).run(install_signal_handlers=False)
    worker = Worker(WorkerConfig(), registry=Registry(), db=db)
    with pytest.raises(ValueError, match="no task handlers"):
        worker.start()
    with pytest.raises(RuntimeError, match="started already"):
        worker.start()


def test_delayed_tasks_wait_for_their_time(db: Database, records: Path) -> None:
    clock = ManualClock()
    tasks = TaskRepository(db, clock)
    later = tasks.enqueue(type="t.noop", run_after_utc=clock.now + timedelta(seconds=60)).task
    run_burst(db, clock=clock)
    assert tasks.get(later.task_id).status.value == "queued"
    clock.advance(61)
    run_burst(db, clock=clock)
    assert tasks.get(later.task_id).status.value == "completed"
