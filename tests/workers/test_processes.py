"""Real `prismq-queue worker` processes on both backends: draining, filtering, retries,
cancellation, lease renewal, signals, and a worker killed mid-task."""

from __future__ import annotations

import json
import signal
import socket
import time
import urllib.request
from collections import Counter

import pytest

from queue_core.repositories import TaskRepository, WorkerRepository
from queue_core.schemas import TaskCreate
from tests.workers.conftest import WINDOWS, Workers, wait_for_status, wait_until
from workers import Registry


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_burst_workers_drain_the_queue_once_each(workers: Workers, tasks: TaskRepository) -> None:
    created = tasks.enqueue_many(
        [TaskCreate(type="t.record", payload={"n": i}) for i in range(120)]
    )
    first = workers.start("--burst", "--concurrency", "2")
    second = workers.start("--burst", "--concurrency", "2")
    assert first.wait(60) == 0, first.output()
    assert second.wait(60) == 0, second.output()

    stats = tasks.stats()
    assert (stats.completed_tasks, stats.queued_tasks, stats.leased_tasks) == (120, 0, 0)
    runs = Counter(r["task_id"] for r in workers.events("run"))
    assert runs == Counter({t.task_id: 1 for t in created})  # each ran exactly once
    assert tasks.get(created[7].task_id).result == {"n": 7}
    stopped = [w for w in WorkerRepository(tasks.db).list() if w.pid in (first.pid, second.pid)]
    assert len(stopped) == 2
    assert all(w.stopped_at_utc is not None for w in stopped)


def test_filters_retries_permanent_errors_and_json_logs(
    workers: Workers, tasks: TaskRepository
) -> None:
    def add(task_type: str, **fields: object) -> int:
        return tasks.enqueue(type=task_type, **fields).task.task_id

    us = add("t.record", compatibility={"region": "us"}, payload={"secret": "s3cr3t"})
    video = add("t.record", compatibility={"formats": "video"})
    both = add("t.record", compatibility={"formats": ["video", "audio"]})
    eu = add("t.record", compatibility={"region": "eu"})
    gpu = add("t.record", compatibility={"gpu": True})
    unhandled = add("t.unhandled")
    permanent = add("t.permanent")
    recovers = add("t.flaky", payload={"fail_times": 2}, max_attempts=5)
    exhausted = add("t.flaky", payload={"fail_times": 9}, max_attempts=2)

    worker = workers.start(
        "--burst",
        "--capabilities",
        '{"region": "us", "formats": ["video", "audio"]}',
        "--log-format",
        "json",
        "--log-level",
        "DEBUG",
        env={"PRISMQ_QUEUE_RETRY_BASE_SECONDS": "0"},  # retries due at once: burst runs them
    )
    assert worker.wait(60) == 0, worker.output()

    for task_id in (us, video, both):
        assert tasks.get(task_id).status.value == "completed"
    for task_id in (eu, gpu, unhandled):
        assert (tasks.get(task_id).status.value, tasks.get(task_id).attempts) == ("queued", 0)
    failed = tasks.get(permanent)
    assert (failed.status.value, failed.attempts) == ("failed", 1)
    done = tasks.get(recovers)
    assert (done.status.value, done.attempts, done.result) == ("completed", 3, {"attempt": 3})
    dead = tasks.get(exhausted)
    assert (dead.status.value, dead.attempts) == ("failed", 2)
    assert dead.error_message == "RuntimeError: flaky failure on attempt 2"
    assert [log.message for log in tasks.logs(exhausted)].count("retry scheduled") == 1

    output = worker.output()
    assert "s3cr3t" not in output  # payloads are never logged
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]
    assert {line["worker_id"] for line in lines} == {lines[0]["worker_id"]}
    started = [line for line in lines if line["message"].startswith("task started")]
    assert {line["task_id"] for line in started} >= {us, video, both, permanent}
    assert all(line["task_type"] for line in started)


def test_cancellation_lease_renewal_and_metrics(workers: Workers, tasks: TaskRepository) -> None:
    port = free_port()
    worker = workers.start(
        "--concurrency", "3", "--lease-seconds", "1.5", "--metrics-port", str(port)
    )
    long = tasks.enqueue(type="t.sync_wait", payload={"seconds": 4.8}).task.task_id
    sync = tasks.enqueue(type="t.sync_wait", payload={"seconds": 60}).task.task_id
    coro = tasks.enqueue(type="t.async_wait", payload={"seconds": 60}).task.task_id
    wait_until(lambda: len(workers.events("start")) == 3, what="three handlers to start")

    assert tasks.cancel(sync).immediate is False
    assert tasks.cancel(coro).immediate is False
    for task_id in (sync, coro):
        cancelled = wait_for_status(tasks, task_id, "cancelled", timeout=15)
        assert cancelled.finished_at_utc is not None
        assert "cancelled" in [log.message for log in tasks.logs(task_id)]
    [sync_end] = workers.events("end", sync)
    assert (sync_end["finished"], sync_end["cancel_requested"]) == (False, True)
    [coro_end] = workers.events("cancelled", coro)
    assert coro_end["cancel_requested"] is True

    # The long task runs for more than three lease lengths and keeps its lease throughout.
    done = wait_for_status(tasks, long, "completed", timeout=20)
    assert (done.attempts, done.result) == (1, {"finished": True})
    assert len(workers.events("start", long)) == 1
    assert "lease renewed" in [log.message for log in tasks.logs(long)]

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        body = response.read().decode()
    assert 'prismq_worker_tasks_cancelled_total{type="t.sync_wait"} 1.0' in body
    assert 'prismq_worker_tasks_cancelled_total{type="t.async_wait"} 1.0' in body
    assert 'prismq_worker_tasks_completed_total{type="t.sync_wait"} 1.0' in body

    worker.signal_stop()
    assert worker.wait(20) == 0, worker.output()


def test_signals_finish_short_tasks_release_the_rest_and_a_second_one_stops_at_once(
    workers: Workers, tasks: TaskRepository
) -> None:
    # Two workers side by side (they start faster together); capabilities route the tasks.
    graceful = workers.start(
        "--concurrency", "2", "--shutdown-grace", "1.5", "--capabilities", '{"lane": "a"}'
    )
    hasty = workers.start("--shutdown-grace", "120", "--capabilities", '{"lane": "b"}')
    short = tasks.enqueue(
        type="t.sleep", payload={"seconds": 0.6}, compatibility={"lane": "a"}
    ).task.task_id
    hung = tasks.enqueue(
        type="t.hang", payload={"seconds": 60}, compatibility={"lane": "a"}
    ).task.task_id
    stuck = tasks.enqueue(
        type="t.hang", payload={"seconds": 120}, compatibility={"lane": "b"}
    ).task.task_id
    wait_until(lambda: len(workers.events("start")) == 3, what="three handlers to start")

    started = time.monotonic()
    graceful.signal_stop()
    if WINDOWS:
        hasty.signal_stop()
    else:
        hasty.proc.send_signal(signal.SIGINT)  # Ctrl+C
    wait_until(lambda: "stopping on SIG" in hasty.output(), what="the first signal")
    hasty.signal_stop()  # the second signal: stop now, whatever the grace period says
    assert hasty.wait(30) == 0, hasty.output()
    assert "stopping at once" in hasty.output()
    assert graceful.wait(30) == 0, graceful.output()
    assert time.monotonic() - started < 20

    assert tasks.get(short).status.value == "completed"  # finished within the grace period
    for task_id in (hung, stuck):  # released without using up an attempt
        released = tasks.get(task_id)
        assert (released.status.value, released.attempts, released.locked_by) == (
            "queued",
            0,
            None,
        )
        assert "released" in [log.message for log in tasks.logs(task_id)]
    assert tasks.stats().leased_tasks == 0  # nothing left leased to a worker that exited
    pids = (graceful.pid, hasty.pid)
    stopped = [w for w in WorkerRepository(tasks.db).list() if w.pid in pids]
    assert len(stopped) == 2
    assert all(w.stopped_at_utc is not None for w in stopped)


def test_a_killed_worker_s_task_is_completed_by_another_worker(
    workers: Workers, tasks: TaskRepository
) -> None:
    task_id = tasks.enqueue(type="t.crash_first").task.task_id
    doomed = workers.start("--lease-seconds", "1")
    wait_until(lambda: workers.events("run", task_id), what="the first attempt to start")
    rescuer = workers.start("--lease-seconds", "1")
    doomed.kill()  # SIGKILL: no release, no clean-up
    done = wait_for_status(tasks, task_id, "completed", timeout=30)
    assert (done.attempts, done.result) == (2, {"attempt": 2})
    runs = workers.events("run", task_id)
    assert [(r["attempt"], r["pid"]) for r in runs] == [(1, doomed.pid), (2, rescuer.pid)]
    assert any("lease expired" in log.message for log in tasks.logs(task_id))
    rescuer.signal_stop()
    assert rescuer.wait(20) == 0, rescuer.output()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--concurrency", "0"], "--concurrency"),
        (["--capabilities", "[1]"], "must be a JSON object"),
        (["--capabilities", "{bad"], "not valid JSON"),
        (["--strategy", "nope"], "--strategy"),
        (["--log-format", "xml"], "--log-format"),
        (["--worker-id", " "], "cannot be empty"),
    ],
)
def test_bad_options_exit_2_with_one_line(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from queue_core.cli import main

    code = main(["worker", "--import", "tests.workers.handlers", *args])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert message in err


def test_import_errors_exit_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from queue_core.cli import main

    assert main(["worker"]) == 2
    assert "--import" in capsys.readouterr().err
    assert main(["worker", "--import", "no_such_module_here"]) == 2
    err = capsys.readouterr().err
    assert "cannot import 'no_such_module_here'" in err
    assert len(err.strip().splitlines()) == 1


def test_a_module_without_handlers_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from queue_core.cli import main

    monkeypatch.setattr("workers.cli.default_registry", Registry())
    assert main(["worker", "--import", "json"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: no task handlers registered by json: decorate them with @task"
    ]
