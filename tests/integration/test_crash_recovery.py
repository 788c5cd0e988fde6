"""The web process dies mid-run; a separate worker process finishes the run.

The "web process" is examples/embedded_app.py under uvicorn in a subprocess: a run is
started over HTTP and begins on the app's embedded worker slot; the process is killed
(SIGKILL on POSIX, TerminateProcess on Windows) with the run half done. Once its lease has
expired, ``prismq-queue worker --burst`` recovers the task and runs it to completion, and
a restarted manager brings the run registry up to date."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from queue_core.clock import utcnow
from queue_core.database import Database
from queue_core.repositories import TaskRepository
from queue_core.states import TaskStatus
from tests.integration.test_examples import ROOT, example_env, run_worker_burst, wait_for
from workers.integration import QueueTaskManager, RunStatus

LEASE_SECONDS = 1.0  # the minimum: the dead process's lease runs out soon


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_worker_finishes_the_run_of_a_killed_web_process(db_url: str, tmp_path: Path) -> None:
    runs_file = tmp_path / "runs.json"
    marker = tmp_path / "slow.marker"
    port = free_port()
    env = example_env(
        PRISMQ_QUEUE_TASK_MANAGER="queue",
        PRISMQ_QUEUE_DATABASE_URL=db_url,
        EXAMPLE_RUNS_FILE=str(runs_file),
        EXAMPLE_LEASE_SECONDS=str(LEASE_SECONDS),
    )
    web = subprocess.Popen(
        [sys.executable, "-m", "examples.embedded_app", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:

        def serving() -> bool:
            assert web.poll() is None, "the example app exited"
            try:
                return httpx.get(f"{base}/runs/active", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(serving)
        response = httpx.post(
            f"{base}/runs",
            json={
                "module_id": "example.slow",
                "parameters": {"seconds": 1.5, "marker": str(marker)},
                "run_id": "survivor",
            },
            timeout=10,
        )
        assert response.status_code == 202
        task_id = response.json()["task_id"]
        wait_for(lambda: marker.exists())  # the handler is running inside the web process
        wait_for(
            lambda: json.loads(runs_file.read_text("utf-8"))["survivor"]["status"] == "running"
        )
    finally:
        web.kill()
        web.wait(timeout=30)

    db = Database(db_url)
    try:
        tasks = TaskRepository(db)
        held = tasks.get(task_id)
        assert held.status is TaskStatus.LEASED
        assert held.attempts == 1
        assert held.lease_until_utc is not None
        # The dead process's lease must run out before anyone may take the task over.
        time.sleep(max(0.0, (held.lease_until_utc - utcnow()).total_seconds()) + 0.2)

        worker = run_worker_burst(db_url)
        assert worker.returncode == 0, worker.stderr
        done = tasks.get(task_id)
        assert done.status is TaskStatus.COMPLETED
        assert done.attempts == 2
        assert done.locked_by != held.locked_by
        assert marker.read_text("utf-8").splitlines() == ["started", "started"]

        # The registry still says "running" (its writer died); a restarted app catches up.
        from examples.run_registry import JsonFileRunRegistry

        registry = JsonFileRunRegistry(runs_file)
        stale = registry.get_run("survivor")
        assert stale is not None
        assert stale.status is RunStatus.RUNNING

        async def restart() -> None:
            manager = QueueTaskManager(registry, db)
            assert await manager.track(["survivor"]) == []  # finished already
            await manager.close()

        asyncio.run(restart())
        final = registry.get_run("survivor")
        assert final is not None
        assert (final.status, final.exit_code) == (RunStatus.COMPLETED, 0)
    finally:
        db.dispose()
