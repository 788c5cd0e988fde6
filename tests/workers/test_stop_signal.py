"""A worker stopped by a signal says which one by name, and the first one lets the running
task finish within the grace period (issue 12 item 18)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from queue_core.database import Database
from queue_core.repositories import TaskRepository
from queue_core.states import TaskStatus
from workers.signals import signal_name

TIMEOUT = 60.0

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def test_signal_name() -> None:
    assert signal_name(signal.SIGINT) == "SIGINT"
    assert signal_name(signal.SIGTERM) == "SIGTERM"
    assert signal_name(12345) == "signal 12345"


def test_first_sigint_is_named_and_lets_the_running_task_finish(
    sqlite_url: str, tmp_path: Path
) -> None:
    with Database(sqlite_url) as db:
        tasks = TaskRepository(db)
        task_id = tasks.enqueue(type="demo.sleep", payload={"seconds": 2}).task.task_id
        log = tmp_path / "worker.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PRISMQ_QUEUE_")}
        with log.open("wb") as out:
            worker = subprocess.Popen(
                [
                    *(sys.executable, "-m", "queue_core.cli", "worker"),
                    *("--import", "workers.demo", "--database-url", sqlite_url, "--no-maintenance"),
                ],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            deadline = time.monotonic() + TIMEOUT
            while tasks.get(task_id).status is not TaskStatus.LEASED:
                assert worker.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
            worker.send_signal(signal.SIGINT)
            assert worker.wait(TIMEOUT) == 0, log.read_text()
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
        task = tasks.get(task_id)
    output = log.read_text()
    assert task.status is TaskStatus.COMPLETED, output
    assert task.result is not None
    assert task.result["finished"] is True, output
    assert "stopping on SIGINT" in output, output
    assert output.count("worker stopped") == 1, output
