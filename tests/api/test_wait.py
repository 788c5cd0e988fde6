"""`GET /api/queue/tasks/{id}?wait=SECONDS` (CONTRACT §8, §9) and `tasks wait` (§7)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from queue_core.database import Database
from queue_core.repositories import LeaseRepository, TaskRepository
from tests.api.conftest import child_env

TASKS = "/api/queue/tasks"
PROMPT_SECONDS = 10.0


def _complete_later(db: Database, task_type: str, delay: float) -> threading.Thread:
    def run() -> None:
        time.sleep(delay)
        leases = LeaseRepository(db)
        (lease,) = leases.claim("w-rest", [task_type])
        leases.complete(lease, {"done": 1})

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_wait_answers_as_soon_as_the_task_is_terminal(client: TestClient, db_for: Database) -> None:
    task_id = client.post(TASKS, json={"type": "r.done"}).json()["task_id"]
    _complete_later(db_for, "r.done", 0.5)
    started = time.monotonic()
    response = client.get(f"{TASKS}/{task_id}", params={"wait": 60})
    assert response.status_code == 200
    assert response.json()["status"] == "completed"
    assert response.json()["result"] == {"done": 1}
    assert 0.4 < time.monotonic() - started < PROMPT_SECONDS


def test_wait_answers_at_the_deadline_with_the_current_state(client: TestClient) -> None:
    task_id = client.post(TASKS, json={"type": "r.never"}).json()["task_id"]
    started = time.monotonic()
    response = client.get(f"{TASKS}/{task_id}", params={"wait": 0.6})
    assert response.status_code == 200
    assert response.json()["status"] == "queued"
    assert 0.6 <= time.monotonic() - started < PROMPT_SECONDS
    # wait=0 (and no wait) answer at once.
    assert client.get(f"{TASKS}/{task_id}", params={"wait": 0}).json()["status"] == "queued"


@pytest.mark.parametrize("value", ["-1", "60.5", "61", "abc", "nan", "inf"])
def test_wait_outside_0_to_60_is_422(client: TestClient, value: str) -> None:
    task_id = client.post(TASKS, json={"type": "r.x"}).json()["task_id"]
    assert client.get(f"{TASKS}/{task_id}", params={"wait": value}).status_code == 422


def test_wait_on_an_unknown_task_is_404_at_once(client: TestClient) -> None:
    started = time.monotonic()
    assert client.get(f"{TASKS}/999", params={"wait": 30}).status_code == 404
    assert time.monotonic() - started < PROMPT_SECONDS


def test_long_polls_hold_no_connection_and_no_thread(
    make_client: object, db_url: str, backend: str
) -> None:
    """Twenty concurrent 1.5-second long polls: each database read holds a connection only for
    itself, and they all end together (a poll held on a thread of a small pool would queue)."""
    db = Database(db_url)
    try:
        from api import create_app

        app = create_app(database=db)
        task_id = TaskRepository(db).enqueue(type="r.idle").task.task_id
        held: list[float] = []
        out: dict[int, float] = {}

        def checkout(dbapi: object, record: object, proxy: object) -> None:
            out[id(record)] = time.monotonic()

        def checkin(dbapi: object, record: object) -> None:
            if id(record) in out:
                held.append(time.monotonic() - out.pop(id(record)))

        event.listen(db.engine.pool, "checkout", checkout)
        event.listen(db.engine.pool, "checkin", checkin)
        with TestClient(app) as client:
            started = time.monotonic()
            with ThreadPoolExecutor(max_workers=20) as pool:
                answers = list(
                    pool.map(
                        lambda _: client.get(f"{TASKS}/{task_id}", params={"wait": 1.5}),
                        range(20),
                    )
                )
            elapsed = time.monotonic() - started
        assert all(a.status_code == 200 for a in answers)
        assert elapsed < 1.5 * 4, elapsed  # twenty serial waits would take 30 s
        assert held
        assert max(held) < 1.0, held
    finally:
        db.dispose()


def _cli(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "queue_core.cli", *args, "--database-url", url],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=120,
    )


def test_cli_tasks_wait(db_url: str, db_for: Database) -> None:
    tasks = TaskRepository(db_for)
    done = tasks.enqueue(type="c.done").task.task_id
    _complete_later(db_for, "c.done", 0.5)
    result = _cli("tasks", "wait", str(done), "--timeout", "60", url=db_url)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["status"] == "completed"

    cancelled = tasks.enqueue(type="c.cancel").task.task_id
    tasks.cancel(cancelled)
    result = _cli("tasks", "wait", str(cancelled), url=db_url)
    assert result.returncode == 1
    assert json.loads(result.stdout)["status"] == "cancelled"

    queued = tasks.enqueue(type="c.never").task.task_id
    result = _cli("tasks", "wait", str(queued), "--timeout", "0.5", url=db_url)
    assert result.returncode == 1
    assert json.loads(result.stdout)["status"] == "queued"
    assert result.stderr.strip() == f"error: task {queued} is still queued after 0.5 s"

    result = _cli("tasks", "wait", "424242", "--timeout", "1", url=db_url)
    assert result.returncode == 1
    assert result.stderr.strip() == "error: task 424242 not found"
