"""The examples in examples/ run: the FastAPI app that enqueues (with a worker process in
burst mode), embedded mode, in-memory mode, and the migration and rollback scripts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from queue_core.database import Database
from queue_core.repositories import TaskRepository, WorkerRepository
from queue_core.states import TaskStatus

ROOT = Path(__file__).resolve().parents[2]
WAIT_SECONDS = 30.0


@pytest.fixture
def runs_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "runs.json"
    monkeypatch.setenv("EXAMPLE_RUNS_FILE", str(path))
    return path


@pytest.fixture
def queue_env(db_url: str, runs_file: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("PRISMQ_QUEUE_TASK_MANAGER", "queue")
    monkeypatch.setenv("PRISMQ_QUEUE_DATABASE_URL", db_url)
    return db_url


def app_client(*, embedded: bool) -> TestClient:
    from examples.fastapi_app import create_app

    return TestClient(create_app(embedded_workers=embedded))


def wait_for(check: Callable[[], Any], timeout: float = WAIT_SECONDS) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def run_status(client: TestClient, run_id: str) -> str:
    response = client.get(f"/runs/{run_id}")
    assert response.status_code == 200
    return str(response.json()["status"])


def example_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, **extra}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def run_worker_burst(db_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            *(sys.executable, "-m", "queue_core.cli", "worker", "--database-url", db_url),
            *("--import", "examples.worker_module", "--burst"),
        ],
        cwd=ROOT,
        env=example_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_app_enqueues_and_a_worker_process_runs_the_work(queue_env: str, db: Database) -> None:
    with app_client(embedded=False) as client:
        response = client.post(
            "/runs", json={"module_id": "example.greet", "parameters": {"name": "Ada"}}
        )
        assert response.status_code == 202
        run = response.json()
        assert run["status"] == "queued"
        assert run["task_id"] is not None
        replay = client.post(
            "/runs",
            json={
                "module_id": "example.greet",
                "parameters": {"name": "Ada"},
                "run_id": run["run_id"],
            },
        )
        assert replay.json()["task_id"] == run["task_id"]  # a retried request: one task
        assert client.get("/runs/active").json() == {"count": 1, "run_ids": [run["run_id"]]}

        worker = run_worker_burst(queue_env)
        assert worker.returncode == 0, worker.stderr

        wait_for(lambda: run_status(client, run["run_id"]) == "completed")
        done = client.get(f"/runs/{run['run_id']}").json()
        assert done["exit_code"] == 0
        assert client.get("/runs/active").json() == {"count": 0, "run_ids": []}
    task = TaskRepository(db).get(run["task_id"])
    assert task.status is TaskStatus.COMPLETED
    assert task.result == {"greeting": "Hello, Ada!"}


def test_embedded_mode_runs_the_work_inside_the_app(
    queue_env: str, db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A short lease: the lease keeper, which also brings cancel requests, ticks every second.
    monkeypatch.setenv("EXAMPLE_LEASE_SECONDS", "3")
    with app_client(embedded=True) as client:
        greet = client.post(
            "/runs", json={"module_id": "example.greet", "parameters": {"name": "Bo"}}
        ).json()
        bad = client.post("/runs", json={"module_id": "example.greet", "parameters": {}}).json()
        slow = client.post(
            "/runs", json={"module_id": "example.slow", "parameters": {"seconds": 60}}
        ).json()
        wait_for(lambda: run_status(client, greet["run_id"]) == "completed")
        wait_for(lambda: run_status(client, bad["run_id"]) == "failed")
        failed = client.get(f"/runs/{bad['run_id']}").json()
        assert "parameters.name" in failed["error_message"]  # PermanentError: no retries
        wait_for(lambda: run_status(client, slow["run_id"]) == "running")
        cancel = client.post(f"/runs/{slow['run_id']}/cancel")
        assert cancel.json() == {"run_id": slow["run_id"], "cancelled": True}
        assert run_status(client, slow["run_id"]) == "cancelled"
        assert client.post(f"/runs/{slow['run_id']}/cancel").json()["cancelled"] is False
        missing = client.post("/runs", json={"module_id": "example.nothing"})
        assert missing.status_code == 422
        assert "example.nothing" in missing.json()["detail"]
        assert client.get("/runs/nope").status_code == 404
    assert TaskRepository(db).get(failed["task_id"]).attempts == 1
    (embedded,) = WorkerRepository(db).list()
    assert embedded.stopped_at_utc is not None  # stopped gracefully with the app
    stored = json.loads((tmp_path / "runs.json").read_text("utf-8"))
    assert {run["status"] for run in stored.values()} == {"completed", "failed", "cancelled"}


def test_in_memory_mode_is_the_old_behaviour(runs_file: Path) -> None:
    with app_client(embedded=True) as client:
        run = client.post(
            "/runs", json={"module_id": "example.greet", "parameters": {"name": "Cy"}}
        ).json()
        assert "task_id" in run
        wait_for(lambda: run_status(client, run["run_id"]) == "completed")
        assert client.get(f"/runs/{run['run_id']}").json()["task_id"] is None


@pytest.fixture
def sqlite_queue_env(sqlite_url: str, runs_file: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The scripts are backend-agnostic (test_migration.py runs their functions on both)."""
    monkeypatch.setenv("PRISMQ_QUEUE_DATABASE_URL", sqlite_url)
    return sqlite_url


def _history(runs_file: Path, runs: list[dict[str, Any]]) -> None:
    runs_file.write_text(json.dumps({run["run_id"]: run for run in runs}), "utf-8")


def test_the_migration_script_moves_unfinished_runs_into_the_queue(
    sqlite_queue_env: str,
    runs_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _history(
        runs_file,
        [
            {"run_id": "q1", "module_id": "example.greet", "parameters": {"name": "A"}},
            {
                "run_id": "r1",
                "module_id": "example.greet",
                "parameters": {"name": "B"},
                "status": "running",
            },
            {"run_id": "c1", "module_id": "example.greet", "status": "completed"},
            {"run_id": "x1", "module_id": "example.unknown", "status": "queued"},
        ],
    )
    env = example_env(EXAMPLE_RUNS_FILE=str(runs_file), PRISMQ_QUEUE_DATABASE_URL=sqlite_queue_env)
    first = subprocess.run(
        [sys.executable, "-m", "examples.migrate_runs"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert first.returncode == 1, first.stderr  # x1 has no handler
    report = json.loads(first.stdout)
    assert sorted(report["enqueued"]) == ["q1", "r1"]
    assert report["skipped"] == ["c1"]
    assert list(report["failed"]) == ["x1"]
    assert "example.unknown" in report["failed"]["x1"]
    # Once more, in this process (the script's main() reads the same variables).
    from examples import migrate_runs

    monkeypatch.setenv("PRISMQ_QUEUE_DATABASE_URL", sqlite_queue_env)
    assert migrate_runs.main() == 1
    assert sorted(json.loads(capsys.readouterr().out)["already_enqueued"]) == ["q1", "r1"]
    with Database(sqlite_queue_env) as db:
        tasks = TaskRepository(db).list()
    assert sorted(t.idempotency_key or "" for t in tasks) == ["q1", "r1"]
    stored = json.loads(runs_file.read_text("utf-8"))
    assert stored["r1"]["status"] == "queued"  # it starts again from the beginning
    assert stored["r1"]["task_id"] is not None
    assert stored["c1"]["status"] == "completed"


def test_the_rollback_script_runs_queued_runs_in_memory(
    sqlite_queue_env: str, runs_file: Path
) -> None:
    _history(
        runs_file,
        [{"run_id": "q1", "module_id": "example.greet", "parameters": {"name": "D"}}],
    )
    from examples import migrate_runs

    assert migrate_runs.main() == 0
    env = example_env(EXAMPLE_RUNS_FILE=str(runs_file), PRISMQ_QUEUE_DATABASE_URL=sqlite_queue_env)
    done = subprocess.run(
        [sys.executable, "-m", "examples.rollback_runs", "--timeout", "30"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["moved"] == ["q1"]
    with Database(sqlite_queue_env) as db:
        (task,) = TaskRepository(db).list()
    assert task.status is TaskStatus.CANCELLED  # out of the queue
    stored = json.loads(runs_file.read_text("utf-8"))["q1"]
    assert (stored["status"], stored["exit_code"]) == ("completed", 0)  # ran in memory


@pytest.fixture(autouse=True)
def _no_stray_registry(tmp_path: Path) -> Iterator[None]:
    yield
    assert not (ROOT / "runs.json").exists(), "an example wrote runs.json into the repository"


def test_pipeline_example_runs_each_step_after_the_one_it_depends_on(db: Database) -> None:
    from examples.pipeline import SCRIPTS_PER_IDEA, run_pipeline

    ids = run_pipeline(db, ["space elevators", "tidal power"])
    tasks = TaskRepository(db)
    by_id = {t.task_id: t for t in tasks.list(limit=1000)}
    assert all(t.status is TaskStatus.COMPLETED for t in by_id.values()), [
        (t.task_id, t.type, t.status, t.error_message) for t in by_id.values()
    ]
    assert len(ids["script"]) == len(ids["audio"]) == 2 * SCRIPTS_PER_IDEA
    for task in by_id.values():
        for dependency in task.depends_on:
            before = by_id[dependency]
            assert before.finished_at_utc is not None
            assert task.processing_started_utc is not None
            assert before.finished_at_utc <= task.processing_started_utc, (dependency, task)
    publish = by_id[ids["publish"]]
    assert publish.depends_on == sorted(ids["audio"])
    assert publish.result == {"published": ["space elevators", "tidal power"]}
    assert by_id[ids["audio"][0]].result == {
        "audio": "space elevators-1.wav",
        "style": "calm",
    }
