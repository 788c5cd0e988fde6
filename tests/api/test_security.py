"""API keys and CORS."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from api.security import bearer_token, key_is_valid

PROTECTED = [
    ("GET", "/api/queue/tasks"),
    ("GET", "/api/queue/tasks/1"),
    ("POST", "/api/queue/tasks"),
    ("POST", "/api/queue/enqueue"),
    ("POST", "/api/queue/tasks/batch"),
    ("POST", "/api/queue/tasks/1/cancel"),
    ("POST", "/api/queue/tasks/1/retry"),
    ("GET", "/api/queue/tasks/1/logs"),
    ("GET", "/api/queue/stats"),
    ("GET", "/api/queue/workers"),
    ("GET", "/metrics"),
    ("GET", "/static/README.md"),
    ("GET", "/static/swagger-ui-LICENSE.txt"),
    ("GET", "/docs/oauth2-redirect"),
    ("GET", "/openapi.json/x"),
    ("GET", "/no/such/path"),
]
# CONTRACT §8: the docs page, what it loads before a key is typed in, and the document.
PUBLIC_DOCS = [
    "/docs",
    "/openapi.json",
    "/static/swagger-ui-bundle.js",
    "/static/swagger-ui.css",
    "/static/favicon-32x32.png",
]


@pytest.fixture
def keyed(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client(api_keys="first-key, second-key")


def test_every_route_but_health_needs_a_key(keyed: TestClient) -> None:
    for method, path in PROTECTED:
        response = keyed.request(method, path, json={"type": "demo.echo"})
        assert response.status_code == 401, path
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json() == {"detail": "missing or invalid API key"}
    assert keyed.get("/api/queue/tasks").status_code == 401


def test_wrong_credentials_are_401(keyed: TestClient) -> None:
    for authorization in (
        "Bearer wrong-key",
        "Bearer first-key-and-more",
        "Basic Zmlyc3Qta2V5",
        "first-key",
        "Bearer ",
    ):
        response = keyed.get("/api/queue/stats", headers={"Authorization": authorization})
        assert response.status_code == 401, authorization


def test_each_configured_key_works(keyed: TestClient) -> None:
    for key in ("first-key", "second-key"):
        headers = {"Authorization": f"Bearer {key}"}
        assert keyed.get("/api/queue/stats", headers=headers).status_code == 200
        created = keyed.post("/api/queue/tasks", json={"type": "demo.echo"}, headers=headers)
        assert created.status_code == 201
    lower_scheme = keyed.get("/metrics", headers={"Authorization": "bearer first-key"})
    assert lower_scheme.status_code == 200


def test_health_is_open(keyed: TestClient) -> None:
    assert keyed.get("/health").json() == {"status": "ok"}


def test_docs_page_assets_and_document_are_open(keyed: TestClient) -> None:
    for path in PUBLIC_DOCS:
        assert keyed.get(path).status_code == 200, path
    page = keyed.get("/docs").text
    for path in PUBLIC_DOCS[1:]:
        assert path in page, f"/docs no longer loads {path}: update PUBLIC_DOCS"


def test_swagger_authorize_sends_a_key_every_data_route_declares(keyed: TestClient) -> None:
    """What Swagger's Authorize needs: a bearer scheme, required by every data operation."""
    document = keyed.get("/openapi.json").json()
    schemes = document["components"]["securitySchemes"]
    (name,) = [n for n, scheme in schemes.items() if scheme.get("scheme") == "bearer"]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if path == "/health":
                continue
            assert {name: []} in operation.get("security", []), f"{method.upper()} {path}"
    # And what it then sends is accepted.
    response = keyed.get("/api/queue/stats", headers={"Authorization": "Bearer second-key"})
    assert response.status_code == 200


def test_without_keys_nothing_is_protected(client: TestClient) -> None:
    assert client.get("/api/queue/stats").status_code == 200


def test_refused_requests_are_counted_by_route(keyed: TestClient) -> None:
    keyed.get("/api/queue/tasks/7")
    text = keyed.get("/metrics", headers={"Authorization": "Bearer first-key"}).text
    assert (
        'prismq_http_requests_total{method="GET",route="/api/queue/tasks/{task_id}",status="401"} '
        "1.0" in text
    )


def test_key_comparison() -> None:
    assert key_is_valid("b", ["a", "b"])
    assert not key_is_valid("c", ["a", "b"])
    assert not key_is_valid("", ["a"])
    assert not key_is_valid("ä", ["a"])
    assert bearer_token(b"Bearer  abc ") == "abc"
    assert bearer_token(None) is None
    assert bearer_token(b"Token abc") is None


def test_cors_is_off_by_default(client: TestClient) -> None:
    response = client.get("/api/queue/stats", headers={"Origin": "https://app.example"})
    assert "access-control-allow-origin" not in response.headers
    preflight = client.options(
        "/api/queue/tasks",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in preflight.headers


def test_cors_allows_only_configured_origins(make_client: Callable[..., TestClient]) -> None:
    client = make_client(cors_origins="https://app.example", api_keys="k")
    preflight = client.options(
        "/api/queue/tasks",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"
    response = client.get(
        "/api/queue/stats",
        headers={"Origin": "https://app.example", "Authorization": "Bearer k"},
    )
    assert response.headers["access-control-allow-origin"] == "https://app.example"
    other = client.get(
        "/api/queue/stats", headers={"Origin": "https://evil.example", "Authorization": "Bearer k"}
    )
    assert "access-control-allow-origin" not in other.headers
