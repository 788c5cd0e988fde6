"""Input limits: body size, payload size, nesting depth, content type, field ranges."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from fastapi.testclient import TestClient

from api.limits import ENVELOPE_ALLOWANCE_BYTES

TASKS = "/api/queue/tasks"
JSON = {"content-type": "application/json"}


def nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = {"a": value}
    return value


def test_payload_over_the_limit_is_413(make_client: Callable[..., TestClient]) -> None:
    client = make_client(payload_max_bytes=1000)
    over = client.post(TASKS, json={"type": "demo.echo", "payload": {"s": "x" * 1000}})
    assert over.status_code == 413
    assert "limit is 1000" in over.json()["detail"]
    under = client.post(TASKS, json={"type": "demo.echo", "payload": {"s": "x" * 900}})
    assert under.status_code == 201
    compat = client.post(TASKS, json={"type": "demo.echo", "compatibility": {"s": "x" * 1000}})
    assert compat.status_code == 413


def test_default_limit_is_one_mebibyte(client: TestClient) -> None:
    just_under = {"type": "demo.echo", "payload": {"s": "x" * (1024 * 1024 - 100)}}
    assert client.post(TASKS, json=just_under).status_code == 201
    over = {"type": "demo.echo", "payload": {"s": "x" * (1024 * 1024)}}
    assert client.post(TASKS, json=over).status_code == 413


def test_declared_body_over_the_limit_is_refused_unread(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(payload_max_bytes=1000)
    body = b'{"type": "demo.echo", "payload": {"s": "' + b"x" * (2 * ENVELOPE_ALLOWANCE_BYTES)
    response = client.post(TASKS, content=body, headers=JSON)
    assert response.status_code == 413
    assert "request body" in response.json()["detail"]


def test_chunked_body_over_the_limit_is_refused(make_client: Callable[..., TestClient]) -> None:
    client = make_client(payload_max_bytes=1000)

    def chunks() -> Iterator[bytes]:  # no Content-Length: the size is only known by counting
        for _ in range(1000):
            yield b"x" * 1024

    response = client.post(TASKS, content=chunks(), headers=JSON)
    assert response.status_code == 413


def test_bad_content_length_is_400(client: TestClient) -> None:
    response = client.post(TASKS, content=b"{}", headers={**JSON, "content-length": "abc"})
    assert response.status_code == 400
    assert "detail" in response.json()


def test_batch_body_may_be_larger_than_one_task(make_client: Callable[..., TestClient]) -> None:
    client = make_client(payload_max_bytes=ENVELOPE_ALLOWANCE_BYTES)
    tasks = [{"type": "demo.echo", "payload": {"s": "x" * 60_000}} for _ in range(4)]
    assert client.post(f"{TASKS}/batch", json={"tasks": tasks}).status_code == 201


def test_nesting_deeper_than_the_limit_is_422(make_client: Callable[..., TestClient]) -> None:
    client = make_client(json_max_depth=8)
    ok = client.post(TASKS, json={"type": "demo.echo", "payload": nested(7)})
    assert ok.status_code == 201
    deep = client.post(TASKS, json={"type": "demo.echo", "payload": nested(9)})
    assert deep.status_code == 422
    assert "deeper than 8" in deep.json()["detail"][0]["msg"]
    very_deep = client.post(TASKS, json={"type": "demo.echo", "payload": nested(50)})
    assert very_deep.status_code == 422
    assert "nested deeper" in very_deep.json()["detail"][0]["msg"]


def test_absurd_nesting_never_reaches_the_parser_stack(client: TestClient) -> None:
    response = client.post(TASKS, content=b"[" * 200_000, headers=JSON)
    assert response.status_code == 422
    response = client.post(TASKS, content=b'{"a":' * 100_000, headers=JSON)
    assert response.status_code == 422


MALFORMED = [
    b"{not json",
    b'{"type": "demo.echo",}',
    b'{"type": "x", "payload": {"a": NaN}}',
    b"\xff\xfe",
]


def test_malformed_json_is_422_with_detail(client: TestClient) -> None:
    for body in MALFORMED:
        response = client.post(TASKS, content=body, headers=JSON)
        assert response.status_code == 422, body
        detail = response.json()["detail"]
        assert isinstance(detail, list)
        assert detail[0]["type"] == "json_invalid", body


def test_a_body_not_declared_as_json_is_415(client: TestClient) -> None:
    for content_type in (None, "text/plain", "application/x-www-form-urlencoded"):
        headers = {"content-type": content_type} if content_type else {}
        for path in (TASKS, "/api/queue/enqueue", f"{TASKS}/batch"):
            response = client.post(path, content=b'{"type": "demo.echo"}', headers=headers)
            assert response.status_code == 415, (path, content_type)
            assert "application/json" in response.json()["detail"]


def test_json_subtypes_are_accepted(client: TestClient) -> None:
    headers = {"content-type": "application/vnd.api+json; charset=utf-8"}
    response = client.post(TASKS, content=b'{"type": "demo.echo"}', headers=headers)
    assert response.status_code == 201


def test_empty_body_is_422(client: TestClient) -> None:
    assert client.post(TASKS, headers=JSON).status_code == 422


INVALID_TASKS: list[object] = [
    {},
    {"type": ""},
    {"type": "x" * 201},
    {"type": "has space"},
    {"type": "-leading-dash"},
    {"type": "ünïcode"},
    {"type": "ok", "priority": 0},
    {"type": "ok", "priority": 1001},
    {"type": "ok", "max_attempts": 0},
    {"type": "ok", "max_attempts": 101},
    {"type": "ok", "payload": [1, 2]},
    {"type": "ok", "payload": "text"},
    {"type": "ok", "compatibility": 3},
    {"type": "ok", "idempotency_key": ""},
    {"type": "ok", "idempotency_key": "k" * 256},
    {"type": "ok", "run_after_utc": "yesterday"},
    {"type": "ok", "unknown_field": 1},
    [],
    "a string",
]


def test_invalid_task_is_422(client: TestClient) -> None:
    for body in INVALID_TASKS:
        response = client.post(TASKS, json=body)
        assert response.status_code == 422, (body, response.text)
        assert isinstance(response.json()["detail"], list)
        batch = client.post(f"{TASKS}/batch", json={"tasks": [{"type": "ok"}, body]})
        assert batch.status_code == 422, (body, batch.text)
    assert client.get(TASKS).json() == []


def test_validation_errors_do_not_echo_the_input(client: TestClient) -> None:
    secret = "s3cret-" + "x" * 300
    response = client.post(TASKS, json={"type": "ok", "priority": secret})
    assert response.status_code == 422
    assert secret not in response.text
    assert response.json()["detail"][0]["loc"] == ["body", "priority"]


def test_priority_and_attempt_bounds_are_accepted(client: TestClient) -> None:
    for body in (
        {"type": "a", "priority": 1, "max_attempts": 1},
        {"type": "a.b:c/d-e_f", "priority": 1000, "max_attempts": 100},
        {"type": "x" * 200},
    ):
        assert client.post(TASKS, json=body).status_code == 201, body


def test_values_a_backend_cannot_store_are_4xx_never_500(client: TestClient) -> None:
    for body in (
        {"type": "ok", "idempotency_key": "nul\u0000key"},
        {"type": "ok", "payload": {"text": "nul\u0000inside"}},
        {"type": "ok", "compatibility": {"nul\u0000key": 1}},
        {"type": "ok", "payload": {"big": 2**64}},
    ):
        response = client.post(TASKS, json=body)
        assert response.status_code in (201, 422), (body, response.text)
