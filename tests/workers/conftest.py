"""Helpers for worker tests: real worker processes, waiting with a bound, reading records."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from queue_core.database import Database
from queue_core.repositories import TaskRepository
from queue_core.schemas import Task
from tests.workers.handlers import RECORD_DIR_ENV, read_records

REPO_ROOT = Path(__file__).resolve().parents[2]
HANDLERS = "tests.workers.handlers"
WINDOWS = sys.platform == "win32"


def wait_until(
    predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05, what: str = ""
) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(interval)


class WorkerProcess:
    """``python -m queue_core.cli worker ...`` in a subprocess, stderr kept in a file."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.args = args
        self.log_path = log_path
        self._log = log_path.open("wb")
        flags = subprocess.CREATE_NEW_PROCESS_GROUP if WINDOWS else 0  # type: ignore[attr-defined]
        self.proc = subprocess.Popen(
            args,
            cwd=REPO_ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            creationflags=flags,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until the worker has registered (its signal handlers are in place by then)."""
        wait_until(
            lambda: "worker started" in self.output() or self.proc.poll() is not None,
            timeout,
            what=f"worker {self.pid} to start",
        )

    def signal_stop(self) -> None:
        """SIGTERM; Ctrl+Break on Windows (its graceful equivalent)."""
        if WINDOWS:
            self.proc.send_signal(signal.CTRL_BREAK_EVENT)  # type: ignore[attr-defined]
        else:
            self.proc.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL (TerminateProcess on Windows): no chance to clean up."""
        self.proc.kill()
        self.proc.wait(10)

    def wait(self, timeout: float = 30.0) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            pytest.fail(f"worker {self.pid} did not exit within {timeout} s:\n{self.output()}")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


class Workers:
    """Starts worker processes for one test and kills any left running at the end."""

    def __init__(self, db_url: str, tmp_path: Path) -> None:
        self.db_url = db_url
        self.tmp_path = tmp_path
        self.records_dir = tmp_path / "records"
        self.records_dir.mkdir(exist_ok=True)
        self.started: list[WorkerProcess] = []

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env[RECORD_DIR_ENV] = str(self.records_dir)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
        )
        env.update(extra or {})
        return env

    def start(self, *args: str, env: dict[str, str] | None = None) -> WorkerProcess:
        command = [
            sys.executable,
            "-m",
            "queue_core.cli",
            "worker",
            "--import",
            HANDLERS,
            "--database-url",
            self.db_url,
            *args,
        ]
        log_path = self.tmp_path / f"worker-{len(self.started)}.log"
        worker = WorkerProcess(command, self.env(env), log_path)
        self.started.append(worker)
        return worker

    def records(self) -> list[dict[str, Any]]:
        return read_records(self.records_dir)

    def events(self, event: str, task_id: int | None = None) -> list[dict[str, Any]]:
        return [
            r
            for r in self.records()
            if r["event"] == event and (task_id is None or r["task_id"] == task_id)
        ]

    def close(self) -> None:
        for worker in self.started:
            worker.close()


@pytest.fixture
def workers(db_url: str, tmp_path: Path) -> Iterator[Workers]:
    started = Workers(db_url, tmp_path)
    yield started
    started.close()


@pytest.fixture
def tasks(db: Database) -> TaskRepository:
    return TaskRepository(db)


def status_of(tasks: TaskRepository, task_id: int) -> str:
    return tasks.get(task_id).status.value


def wait_for_status(
    tasks: TaskRepository, task_id: int, *statuses: str, timeout: float = 20.0
) -> Task:
    def reached() -> Task | None:
        task = tasks.get(task_id)
        return task if task.status.value in statuses else None

    result: Task = wait_until(reached, timeout, what=f"task {task_id} to be {'/'.join(statuses)}")
    return result
