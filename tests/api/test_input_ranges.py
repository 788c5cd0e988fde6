"""Values at and past the edges of what the queue stores are 422, never a 500 or a silent
change (CONTRACT §8; issue 12 items 2 and 3), on both backends."""

from __future__ import annotations

import socket
from collections.abc import Callable
from datetime import datetime

import orjson
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from queue_core.clock import TimeOutOfRange, ensure_utc
from queue_core.database import Database
from queue_core.repositories import InvalidPayload, TaskRepository
from queue_core.schemas import TaskCreate
from tests.api.conftest import Server

TASKS = "/api/queue/tasks"

# Year 0 or year 10000 once converted to UTC: no datetime holds them, no column stores them.
OUT_OF_RANGE_TIMES = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"]
EDGE_TIMES = ["0001-01-01T00:00:00+00:00", "9999-12-31T23:59:59.999999+00:00"]

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# orjson reads the first two as floats (they are past 64 bits); the next as an unsigned int.
OUT_OF_RANGE_INTEGERS = [2**70, -(2**63) - 1, 2**63, 2**64 - 1, 1180591620717411303424]


@pytest.mark.parametrize("text", OUT_OF_RANGE_TIMES)
def test_ensure_utc_raises_a_value_error_not_overflow(text: str) -> None:
    with pytest.raises(TimeOutOfRange, match="outside the supported range"):
        ensure_utc(datetime.fromisoformat(text))
    with pytest.raises(ValidationError, match="outside the supported range"):
        TaskCreate(type="t", run_after_utc=text)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", OUT_OF_RANGE_TIMES)
def test_out_of_range_run_after_is_422(client: TestClient, text: str) -> None:
    for path, body in (
        (TASKS, {"type": "demo.echo", "run_after_utc": text}),
        (f"{TASKS}/batch", {"tasks": [{"type": "demo.echo", "run_after_utc": text}]}),
    ):
        response = client.post(path, json=body)
        assert response.status_code == 422, response.text
        (problem,) = response.json()["detail"]
        assert "outside the supported range" in problem["msg"]
    assert client.get(TASKS).json() == []


@pytest.mark.parametrize("text", EDGE_TIMES)
def test_the_edges_of_the_range_are_stored_exactly(client: TestClient, text: str) -> None:
    created = client.post(TASKS, json={"type": "demo.echo", "run_after_utc": text})
    assert created.status_code == 201, created.text
    got = client.get(f"{TASKS}/{created.json()['task_id']}").json()
    assert datetime.fromisoformat(got["run_after_utc"]) == datetime.fromisoformat(text)


def _http_exchange(sock: socket.socket, request: bytes) -> tuple[int, bytes]:
    """One request and its response on an open keep-alive socket."""
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next(
        int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection mid-body"
        body += chunk
    return int(lines[0].split()[1]), body


def _post(path: str, body: object) -> bytes:
    data = orjson.dumps(body)
    return (
        f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    ).encode() + data


def test_keep_alive_connection_survives_an_out_of_range_time(
    db_url: str, start_server: Callable[..., Server]
) -> None:
    """The 500 used to come with a reset of the client's connection."""
    server = start_server(db_url)
    port = int(server.base_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        for text in OUT_OF_RANGE_TIMES:
            status, body = _http_exchange(
                sock, _post(TASKS, {"type": "demo.echo", "run_after_utc": text})
            )
            assert status == 422, body
        status, body = _http_exchange(sock, _post(TASKS, {"type": "demo.echo"}))
        assert status == 201, body


@pytest.mark.parametrize("value", OUT_OF_RANGE_INTEGERS)
def test_integers_outside_signed_64_bits_are_422(client: TestClient, value: int) -> None:
    raw = b'{"type": "demo.echo", "payload": {"x": [%d]}}' % value
    response = client.post(TASKS, content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert "64-bit" in response.json()["detail"][0]["msg"]
    raw = b'{"type": "demo.echo", "compatibility": {"x": %d}}' % value
    response = client.post(TASKS, content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    raw = b'{"tasks": [{"type": "demo.echo", "payload": {"x": %d}}]}' % value
    response = client.post(
        f"{TASKS}/batch", content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert client.get(TASKS).json() == []


@pytest.mark.parametrize("value", [INT64_MIN, INT64_MAX, 10**18])
def test_integers_inside_signed_64_bits_round_trip(client: TestClient, value: int) -> None:
    raw = b'{"type": "demo.echo", "payload": {"x": %d, "y": "%d"}}' % (value, value)
    created = client.post(TASKS, content=raw, headers={"content-type": "application/json"})
    assert created.status_code == 201, created.text
    got = client.get(f"{TASKS}/{created.json()['task_id']}")
    assert orjson.loads(got.content)["payload"] == {"x": value, "y": str(value)}


def test_long_digit_strings_are_not_numbers(client: TestClient) -> None:
    payload = {"s": "1" * 40, "e": "1e300", "f": 9.2e18, "g": 1234567890123456.5, "h": 1e-300}
    created = client.post(TASKS, json={"type": "demo.echo", "payload": payload})
    assert created.status_code == 201, created.text
    assert created.json()["payload"] == payload


@pytest.mark.parametrize("text", ["1e19", "-1.0e300", "9.3E+18", "12345678901234567890.5"])
def test_floats_outside_the_range_are_422_too(client: TestClient, text: str) -> None:
    """CONTRACT §8 speaks of JSON numbers: 1e19 and 10000000000000000000 are the same one."""
    raw = b'{"type": "demo.echo", "payload": {"x": %s}}' % text.encode()
    response = client.post(TASKS, content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text


@pytest.mark.parametrize("value", OUT_OF_RANGE_INTEGERS)
def test_repository_refuses_them_too(db_url: str, value: int) -> None:
    db = Database(db_url)
    try:
        with pytest.raises(InvalidPayload, match="outside the signed 64-bit range"):
            TaskRepository(db).enqueue(type="t", payload={"deep": {"x": value}})
    finally:
        db.dispose()
