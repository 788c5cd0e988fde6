"""A real uvicorn server started by `prismq-queue api`: CLI, binding rules, keys, processes."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from api.cli import check_bind, is_loopback
from queue_core.settings import QueueSettings, sqlite_url_for
from tests.api.conftest import Server, child_env, cli_command, free_port

TASKS = "/api/queue/tasks"
StartServer = Callable[..., Server]


# 0.0.0.0 is checked by tests/api/test_docs.py, against the message docs/api.md shows.
@pytest.mark.parametrize("host", ["example.com"])
def test_non_loopback_host_without_key_is_refused(host: str, sqlite_url: str) -> None:
    argv = cli_command("api", "--host", host, "--port", str(free_port()))
    result = subprocess.run(
        [*argv, "--database-url", sqlite_url],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(),
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: refusing to listen on {host} without an API key")
    assert "--insecure" in lines[0]


def test_insecure_allows_a_public_host_and_warns_without_schema(
    start_server: StartServer, tmp_path: Path
) -> None:
    server = start_server(sqlite_url_for(tmp_path / "fresh.db"), "--host", "0.0.0.0", "--insecure")
    response = httpx.get(f"{server.base_url}{TASKS}")
    assert response.status_code == 503
    assert "db upgrade" in response.json()["detail"]
    assert "has no queue schema yet" in server.output()


def test_public_host_with_keys_requires_them(start_server: StartServer, sqlite_url: str) -> None:
    server = start_server(
        sqlite_url, "--host", "0.0.0.0", env={"PRISMQ_QUEUE_API_KEYS": "alpha,beta"}
    )
    url = f"{server.base_url}{TASKS}"
    refused = httpx.post(url, json={"type": "demo.echo"})
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == "Bearer"
    accepted = httpx.post(url, json={"type": "demo.echo"}, headers={"Authorization": "Bearer beta"})
    assert accepted.status_code == 201
    assert httpx.get(f"{server.base_url}/health").json() == {"status": "ok"}
    assert httpx.get(f"{server.base_url}/api/queue/stats").status_code == 401
    # CONTRACT §8: the docs stay public so that Swagger's Authorize can be used.
    assert httpx.get(f"{server.base_url}/openapi.json").status_code == 200


def test_concurrent_idempotent_replays_create_one_task(
    start_server: StartServer, db_url: str
) -> None:
    server = start_server(db_url)
    body = {"type": "demo.echo", "payload": {"order": 77}, "idempotency_key": "order-77"}

    def replay(_: int) -> tuple[int, int]:
        with httpx.Client(base_url=server.base_url, timeout=30) as http:
            response = http.post(TASKS, json=body)
            return response.status_code, response.json()["task_id"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(replay, range(24)))
    statuses = [status for status, _ in results]
    assert statuses.count(201) == 1, statuses
    assert statuses.count(200) == len(results) - 1
    assert len({task_id for _, task_id in results}) == 1
    assert len(httpx.get(f"{server.base_url}{TASKS}").json()) == 1


def test_several_server_processes_share_one_sqlite_file(
    start_server: StartServer, sqlite_url: str
) -> None:
    server = start_server(sqlite_url, "--workers", "2")

    def produce(worker: int) -> list[int]:
        with httpx.Client(base_url=server.base_url, timeout=30) as http:
            ids = []
            for i in range(10):
                response = http.post(TASKS, json={"type": "demo.echo", "payload": {"w": worker}})
                assert response.status_code == 201, response.text
                ids.append(response.json()["task_id"])
                if i % 5 == 0:  # replays race across processes too
                    key = {"type": "demo.echo", "idempotency_key": f"shared-{i}"}
                    assert http.post(TASKS, json=key).status_code in (200, 201)
            return ids

    with ThreadPoolExecutor(max_workers=4) as pool:
        ids = [task_id for batch in pool.map(produce, range(4)) for task_id in batch]
    assert len(set(ids)) == 40
    stats = httpx.get(f"{server.base_url}/api/queue/stats").json()
    assert stats["total_tasks"] == 40 + 2  # and one task per shared key


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.1", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.0.2.10", False),
        ("example.com", False),
    ],
)
def test_loopback_detection(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_bind_rule() -> None:
    check_bind("127.0.0.1", QueueSettings(), insecure=False)
    check_bind("0.0.0.0", QueueSettings(api_keys="k"), insecure=False)
    check_bind("0.0.0.0", QueueSettings(), insecure=True)
    with pytest.raises(Exception, match="refusing"):
        check_bind("0.0.0.0", QueueSettings(api_keys=" , "), insecure=False)
