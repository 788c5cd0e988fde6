"""`prismq-queue up`: migrate, one worker subprocess, the API in-process; all stop together."""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from queue_core.settings import sqlite_url_for
from tests.api.conftest import Server

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("workers.demo") is None
    or importlib.util.find_spec("workers.cli") is None,
    reason="`up` runs a worker with workers.demo, which the workers package does not provide yet",
)

TIMEOUT = 60.0


def wait_for(condition: Callable[[], bool], what: str, server: Server) -> None:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}:\n{server.output()}")


def worker_pid(server: Server) -> int:
    found = re.search(r"worker started \(pid (\d+)\)", server.output())
    assert found, server.output()
    return int(found.group(1))


def pid_alive(pid: int) -> bool:
    if sys.platform == "win32":  # pragma: no cover
        import subprocess

        listing = subprocess.run(
            ["tasklist", "/FI", f"PID eq {pid}"], capture_output=True, text=True, check=False
        )
        return str(pid) in listing.stdout
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose: only its parent has not reaped it yet.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")


def test_up_runs_tasks_end_to_end_and_stops_both(
    start_server: Callable[..., Server], tmp_path: Path
) -> None:
    server = start_server(sqlite_url_for(tmp_path / "first-run.db"), command="up")
    assert "database ready" in server.output()
    assert f"dashboard: {server.base_url}/ui" in server.output()
    assert httpx.get(f"{server.base_url}/ui").status_code == 200
    pid = worker_pid(server)
    created = httpx.post(
        f"{server.base_url}/api/queue/tasks", json={"type": "demo.echo", "payload": {"hi": 1}}
    )
    assert created.status_code == 201
    url = f"{server.base_url}/api/queue/tasks/{created.json()['task_id']}"
    wait_for(lambda: httpx.get(url).json()["status"] == "completed", "the demo task", server)
    assert httpx.get(url).json()["result"] is not None

    assert server.stop() == 0, server.output()
    wait_for(lambda: not pid_alive(pid), "the worker to exit", server)
    assert "worker stopped (exit code 0)" in server.output()
    assert "error: the worker" not in server.output()


@pytest.mark.skipif(sys.platform == "win32", reason="kills the worker with SIGKILL")
def test_up_says_when_the_worker_dies_and_keeps_serving(
    start_server: Callable[..., Server], tmp_path: Path
) -> None:
    server = start_server(sqlite_url_for(tmp_path / "q.db"), command="up")
    os.kill(worker_pid(server), signal.SIGKILL)
    wait_for(lambda: "error: the worker" in server.output(), "the death notice", server)
    assert httpx.get(f"{server.base_url}/health").status_code == 200
    assert server.stop() == 0, server.output()
