"""/health, /metrics, /docs and the OpenAPI document."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from queue_core.database import Database
from queue_core.repositories import WorkerRepository

TASKS = "/api/queue/tasks"


def test_health_ok(client: TestClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def metric(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
        if found == labels:
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name}{labels} not in metrics")


def test_metrics_report_queue_depth_and_requests(client: TestClient, db_for: Database) -> None:
    for _ in range(3):
        client.post(TASKS, json={"type": "demo.echo"})
    task = client.post(TASKS, json={"type": "demo.other"}).json()
    client.post(f"{TASKS}/{task['task_id']}/cancel")
    client.get(f"{TASKS}/{task['task_id']}")
    client.get(f"{TASKS}/999999")
    WorkerRepository(db_for).register("w1")

    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert metric(text, "prismq_queue_database_up") == 1
    assert metric(text, "prismq_queue_tasks", status="queued", type="demo.echo") == 3
    assert metric(text, "prismq_queue_tasks", status="cancelled", type="demo.other") == 1
    assert metric(text, "prismq_queue_tasks", status="queued", type="demo.other") == 0
    assert metric(text, "prismq_queue_oldest_queued_age_seconds") >= 0
    assert metric(text, "prismq_queue_workers_active") == 1
    assert metric(text, "prismq_http_requests_total", method="POST", route=TASKS, status="201") == 4
    by_id = f"{TASKS}/{{task_id}}"
    assert metric(text, "prismq_http_requests_total", method="GET", route=by_id, status="200") == 1
    assert metric(text, "prismq_http_requests_total", method="GET", route=by_id, status="404") == 1
    latency = "prismq_http_request_duration_seconds_count"
    assert metric(text, latency, method="GET", route=by_id, status="200") == 1
    assert metric(text, latency, method="GET", route=by_id, status="404") == 1
    assert "999999" not in text  # raw paths never become labels


def test_each_app_has_its_own_registry(make_client: object) -> None:
    first = make_client()  # type: ignore[operator]
    second = make_client()  # type: ignore[operator]
    first.get("/api/queue/stats")
    assert "/api/queue/stats" not in second.get("/metrics").text


def test_docs_work_offline(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    html = page.text
    assert "swagger-ui-bundle.js" in html
    assert "/openapi.json" in html
    assert re.findall(r"https?://", html) == []  # nothing from a CDN or any other host
    for asset in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert asset.startswith("/static/")
        assert client.get(asset).status_code == 200, asset
    assert client.get("/redoc").status_code == 404


def test_openapi_declares_every_endpoint_status_and_example(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    expected = {
        ("post", "/api/queue/tasks"): {"201", "200", "401", "409", "413", "415", "422", "503"},
        ("post", "/api/queue/enqueue"): {"201", "200", "409", "413", "422"},
        ("post", "/api/queue/tasks/batch"): {"201", "409", "413", "422"},
        ("get", "/api/queue/tasks"): {"200", "401", "422", "503"},
        ("get", "/api/queue/tasks/{task_id}"): {"200", "404", "422"},
        ("post", "/api/queue/tasks/{task_id}/cancel"): {"200", "202", "404", "409"},
        ("post", "/api/queue/tasks/{task_id}/retry"): {"200", "404", "409"},
        ("get", "/api/queue/tasks/{task_id}/logs"): {"200", "404"},
        ("get", "/api/queue/stats"): {"200", "401", "503"},
        ("get", "/api/queue/workers"): {"200", "401", "503"},
        ("get", "/health"): {"200", "503"},
        ("get", "/metrics"): {"200", "401"},
    }
    for (method, path), statuses in expected.items():
        responses = paths[path][method]["responses"]
        assert statuses <= set(responses), (method, path, set(responses))
        for status, response in responses.items():
            content = response.get("content", {})
            assert content, (method, path, status)
            assert any("example" in media for media in content.values()), (path, status)
            assert all("schema" in media for media in content.values()), (path, status)
    schemas = spec["components"]["schemas"]
    assert {"Task", "TaskCreate", "TaskLog", "QueueStats", "WorkerInfo", "ErrorResponse"} <= set(
        schemas
    )
    assert "examples" in schemas["TaskCreate"]
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
