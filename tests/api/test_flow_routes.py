"""REST: /api/queue/schedules and /api/queue/types, and depends_on on enqueue (CONTRACT §8)."""

from __future__ import annotations

from fastapi.testclient import TestClient

PREFIX = "/api/queue"


def test_schedule_crud_and_run(client: TestClient) -> None:
    body = {
        "name": "report.daily",
        "type": "report.daily",
        "cron": "0 6 * * *",
        "timezone": "Europe/Prague",
    }
    created = client.post(f"{PREFIX}/schedules", json=body)
    assert created.status_code == 201, created.text
    schedule = created.json()
    assert schedule["name"] == "report.daily"
    assert schedule["catch_up"] == "latest"
    assert schedule["paused"] is False
    assert schedule["payload"] == {}
    assert schedule["priority"] == 100
    assert client.post(f"{PREFIX}/schedules", json=body).status_code == 409
    assert [s["name"] for s in client.get(f"{PREFIX}/schedules").json()] == ["report.daily"]
    assert client.get(f"{PREFIX}/schedules/report.daily").json()["cron"] == "0 6 * * *"
    assert client.post(f"{PREFIX}/schedules/report.daily/pause").json()["paused"] is True
    assert client.post(f"{PREFIX}/schedules/report.daily/resume").json()["paused"] is False
    run = client.post(f"{PREFIX}/schedules/report.daily/run")
    assert run.status_code == 201
    task = run.json()
    assert task["type"] == "report.daily"
    assert task["schedule"] == "report.daily"
    assert client.get(f"{PREFIX}/tasks/{task['task_id']}").json()["schedule"] == "report.daily"
    assert client.delete(f"{PREFIX}/schedules/report.daily").status_code == 200
    for method, path in [
        ("get", "/schedules/report.daily"),
        ("delete", "/schedules/report.daily"),
        ("post", "/schedules/report.daily/pause"),
        ("post", "/schedules/report.daily/resume"),
        ("post", "/schedules/report.daily/run"),
    ]:
        answer = getattr(client, method)(PREFIX + path)
        assert answer.status_code == 404, (path, answer.text)
        assert "detail" in answer.json()


def test_bad_cron_or_time_zone_is_422(client: TestClient) -> None:
    base = {"name": "s", "type": "t"}
    for extra in (
        {"cron": "61 * * * *"},
        {"cron": "* * * *"},
        {"cron": "@daily"},
        {"cron": "* * * * *", "timezone": "Mars/Olympus"},
        {"cron": "* * * * *", "catch_up": "some"},
    ):
        answer = client.post(f"{PREFIX}/schedules", json={**base, **extra})
        assert answer.status_code == 422, (extra, answer.text)
        assert answer.json()["detail"]
    assert client.get(f"{PREFIX}/schedules").json() == []


def test_types_pause_resume_and_limits(client: TestClient) -> None:
    client.post(f"{PREFIX}/tasks", json={"type": "gpu.render"})
    assert client.get(f"{PREFIX}/types").json() == [
        {
            "type": "gpu.render",
            "paused": False,
            "max_running": None,
            "rate": None,
            "queued": 1,
            "leased": 0,
        }
    ]
    assert client.post(f"{PREFIX}/types/gpu.render/pause").json()["paused"] is True
    limited = client.put(
        f"{PREFIX}/types/gpu.render/limits",
        json={"max_running": 2, "rate": {"count": 10, "per_seconds": 60}},
    )
    assert limited.status_code == 200, limited.text
    assert limited.json() == {
        "type": "gpu.render",
        "paused": True,
        "max_running": 2,
        "rate": {"count": 10, "per_seconds": 60.0},
        "queued": 1,
        "leased": 0,
    }
    # A field left out stays; a null clears.
    kept = client.put(f"{PREFIX}/types/gpu.render/limits", json={"rate": None}).json()
    assert kept["max_running"] == 2
    assert kept["rate"] is None
    resumed = client.post(f"{PREFIX}/types/gpu.render/resume").json()
    assert resumed["paused"] is False
    assert resumed["max_running"] == 2
    for bad in (
        {"max_running": 0},
        {"rate": {"count": 0, "per_seconds": 1}},
        {"rate": {"count": 1, "per_seconds": 0}},
        {"other": 1},
    ):
        answer = client.put(f"{PREFIX}/types/gpu.render/limits", json=bad)
        assert answer.status_code == 422, (bad, answer.text)
    assert client.post(f"{PREFIX}/types/bad%20type/pause").status_code == 422


def test_enqueue_depends_on_and_timeout(client: TestClient) -> None:
    first = client.post(f"{PREFIX}/tasks", json={"type": "a"}).json()
    second = client.post(
        f"{PREFIX}/tasks",
        json={"type": "b", "depends_on": [first["task_id"]], "timeout_seconds": 2.5},
    )
    assert second.status_code == 201, second.text
    task = second.json()
    assert task["depends_on"] == [first["task_id"]]
    assert client.get(f"{PREFIX}/tasks/{task['task_id']}").json()["depends_on"] == [
        first["task_id"]
    ]
    assert first["depends_on"] == []
    assert first["schedule"] is None
    missing = client.post(f"{PREFIX}/tasks", json={"type": "b", "depends_on": [987654]})
    assert missing.status_code == 422
    assert "987654" in str(missing.json()["detail"])
    huge = client.post(f"{PREFIX}/tasks", json={"type": "b", "depends_on": [2**63]})
    assert huge.status_code == 422
    batch = client.post(
        f"{PREFIX}/tasks/batch",
        json={"tasks": [{"type": "c", "depends_on": [first["task_id"]]}, {"type": "d"}]},
    )
    assert batch.status_code == 201, batch.text
    assert [t["depends_on"] for t in batch.json()["tasks"]] == [[first["task_id"]], []]
