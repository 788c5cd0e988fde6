"""`prismq-queue up`: migrate, one worker subprocess, the API in-process; all stop together."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from queue_core.database import Database
from queue_core.repositories import TaskRepository
from queue_core.settings import sqlite_url_for
from tests.api.conftest import (
    Server,
    child_env,
    cli_command,
    free_port,
    wait_until_serving,
)

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

    wait_for(lambda: "progress: 1 completed" in server.output(), "a progress line", server)

    assert server.stop() == 0, server.output()
    wait_for(lambda: not pid_alive(pid), "the worker to exit", server)
    assert server.output().count("worker stopped") == 1, server.output()  # item 18: once
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


def test_up_with_a_busy_port_changes_nothing_and_says_so(tmp_path: Path) -> None:
    """Item 13: the port is checked first: one line, exit 1, no database, no worker."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        database = tmp_path / "new" / "q.db"
        done = subprocess.run(
            cli_command("up", "--port", str(port), "--database-url", sqlite_url_for(database)),
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    assert done.returncode == 1, done.stdout + done.stderr
    assert (
        done.stderr.strip().splitlines()
        == [f"error: cannot listen on 127.0.0.1:{port}: Address already in use"]
        or "cannot listen on" in done.stderr.strip()
    ), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not database.parent.exists()


PROJECT_HANDLERS = """\
from workers import task


@task("project.double")
def double(payload):
    return {"n": payload["n"] * 2}
"""


def _console_script() -> str:
    script = Path(sys.executable).with_name("prismq-queue")
    found = str(script) if script.exists() else shutil.which("prismq-queue")
    if found is None:  # pragma: no cover - the package is always installed for the tests
        pytest.skip("the prismq-queue console script is not installed")
    return found


@pytest.mark.skipif(sys.platform == "win32", reason="runs the POSIX console script")
def test_up_imports_the_projects_handlers_from_a_project_with_workers_and_api_packages(
    tmp_path: Path,
) -> None:
    """Items 14 and 15: `up --import MODULE` serves the project's handlers, and the project's
    own `workers/` and `api/` packages in the current directory shadow nothing."""
    project = tmp_path / "project"
    for package in ("workers", "api"):
        (project / package).mkdir(parents=True)
        (project / package / "__init__.py").write_text(
            f"raise ImportError('the project\\'s own {package} package was imported')\n"
        )
    (project / "handlers.py").write_text(PROJECT_HANDLERS)
    port = free_port()
    log = tmp_path / "up.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                *(_console_script(), "up", "--import", "handlers", "--port", str(port)),
                *("--database-url", sqlite_url_for(tmp_path / "q.db")),
            ],
            cwd=project,
            env=child_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Server(process, f"http://127.0.0.1:{port}", log)
    try:
        wait_until_serving(server)
        created = httpx.post(
            f"{server.base_url}/api/queue/tasks",
            json={"type": "project.double", "payload": {"n": 21}},
        )
        assert created.status_code == 201, created.text
        url = f"{server.base_url}/api/queue/tasks/{created.json()['task_id']}"
        wait_for(lambda: httpx.get(url).json()["status"] == "completed", "the task", server)
        assert httpx.get(url).json()["result"] == {"n": 42}
        workers = httpx.get(f"{server.base_url}/api/queue/workers").json()
        assert [w["task_types"] for w in workers] == [["project.double"]]  # no demo handlers
    finally:
        assert server.stop() == 0, server.output()
    assert "was imported" not in server.output()


@pytest.mark.skipif(sys.platform == "win32", reason="sends SIGINT to a process group")
def test_ctrl_c_gives_running_tasks_the_grace_period(tmp_path: Path) -> None:
    """Item 18: Ctrl+C in a terminal signals the whole foreground process group. The running
    task must finish within the grace period, not be released at once."""
    url = sqlite_url_for(tmp_path / "q.db")
    port = free_port()
    log = tmp_path / "up.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            cli_command("up", "--port", str(port), "--database-url", url),
            env=child_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a terminal's foreground process group of its own
        )
    server = Server(process, f"http://127.0.0.1:{port}", log)
    try:
        wait_until_serving(server)
        created = httpx.post(
            f"{server.base_url}/api/queue/tasks",
            json={"type": "demo.sleep", "payload": {"seconds": 3}},
        )
        task_url = f"{server.base_url}/api/queue/tasks/{created.json()['task_id']}"
        wait_for(lambda: httpx.get(task_url).json()["status"] == "leased", "the claim", server)
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl+C does
        assert process.wait(TIMEOUT) == 0, server.output()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    with Database(url) as db:
        task = TaskRepository(db).get(created.json()["task_id"])
    assert task.status.value == "completed", server.output()
    assert task.result == {"slept": task.result["slept"], "finished": True}
    assert "stopping at once" not in server.output()
    assert server.output().count("worker stopped") == 1, server.output()


def test_up_with_a_module_that_does_not_import_stops_with_exit_2(tmp_path: Path) -> None:
    """Item 14: a bad --import is the worker's one-line error, and `up` ends with its code."""
    done = subprocess.run(
        [
            *cli_command("up", "--import", "no_such_module_here", "--port", str(free_port())),
            *("--database-url", sqlite_url_for(tmp_path / "q.db")),
        ],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2, done.stderr
    assert "cannot import 'no_such_module_here'" in errors[0]
    assert "Traceback" not in done.stderr
