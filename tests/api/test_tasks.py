"""Every /api/queue/tasks endpoint and status of CONTRACT §8, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient

from queue_core.database import Database
from queue_core.repositories import LeaseRepository, WorkerRepository

TASKS = "/api/queue/tasks"
TASK_FIELDS = {
    "task_id",
    "type",
    "status",
    "priority",
    "attempts",
    "max_attempts",
    "payload",
    "compatibility",
    "idempotency_key",
    "run_after_utc",
    "created_at_utc",
    "updated_at_utc",
    "processing_started_utc",
    "finished_at_utc",
    "locked_by",
    "lease_until_utc",
    "cancel_requested",
    "error_message",
    "result",
}


def enqueue(client: TestClient, **body: object) -> dict[str, object]:
    response = client.post(TASKS, json={"type": "demo.echo", **body})
    assert response.status_code == 201, response.text
    return dict(response.json())


def lease(db: Database, task_type: str = "demo.echo") -> LeaseRepository:
    leases = LeaseRepository(db)
    assert leases.claim("w1", [task_type])
    return leases


def test_enqueue_returns_201_and_the_task_object(client: TestClient) -> None:
    response = client.post(
        TASKS,
        json={
            "type": "demo.echo",
            "payload": {"n": 1, "nested": {"list": [1, "two"]}},
            "priority": 7,
            "compatibility": {"region": "us"},
            "max_attempts": 3,
        },
    )
    assert response.status_code == 201
    task = response.json()
    assert set(task) >= TASK_FIELDS
    assert task["status"] == "queued"
    assert task["payload"] == {"n": 1, "nested": {"list": [1, "two"]}}
    assert (task["priority"], task["max_attempts"], task["attempts"]) == (7, 3, 0)
    assert task["compatibility"] == {"region": "us"}
    assert task["cancel_requested"] is False
    created = datetime.fromisoformat(task["created_at_utc"])
    assert created.utcoffset() == timedelta(0)


def test_defaults_follow_the_contract(client: TestClient) -> None:
    task = enqueue(client)
    assert (task["priority"], task["max_attempts"]) == (100, 5)
    assert task["payload"] == {}
    assert task["compatibility"] == {}


def test_enqueue_alias_behaves_like_tasks(client: TestClient) -> None:
    response = client.post("/api/queue/enqueue", json={"type": "demo.echo", "payload": {"a": 1}})
    assert response.status_code == 201
    assert client.get(f"{TASKS}/{response.json()['task_id']}").json()["payload"] == {"a": 1}


def test_run_after_in_the_future_is_kept_in_utc(client: TestClient) -> None:
    later = datetime.now(timezone(timedelta(hours=2))) + timedelta(hours=1)
    task = enqueue(client, run_after_utc=later.isoformat())
    assert datetime.fromisoformat(str(task["run_after_utc"])) == later
    assert str(task["run_after_utc"]).endswith("+00:00")


def test_idempotent_replay_returns_200_and_the_same_task(client: TestClient) -> None:
    body = {"type": "demo.echo", "payload": {"order": 1}, "idempotency_key": "order-1"}
    first = client.post(TASKS, json=body)
    again = client.post(TASKS, json=body)
    via_alias = client.post("/api/queue/enqueue", json=body)
    assert first.status_code == 201
    assert again.status_code == 200
    assert via_alias.status_code == 200
    assert again.json() == first.json() == via_alias.json()
    assert len(client.get(TASKS).json()) == 1


@pytest.mark.parametrize(
    "change", [{"payload": {"order": 2}}, {"type": "demo.other"}], ids=["payload", "type"]
)
def test_idempotency_key_with_other_content_is_409(
    client: TestClient, change: dict[str, object]
) -> None:
    body = {"type": "demo.echo", "payload": {"order": 1}, "idempotency_key": "order-1"}
    assert client.post(TASKS, json=body).status_code == 201
    response = client.post(TASKS, json={**body, **change})
    assert response.status_code == 409
    assert "order-1" in response.json()["detail"]


def test_get_task_and_404(client: TestClient) -> None:
    task = enqueue(client, payload={"x": 1})
    assert client.get(f"{TASKS}/{task['task_id']}").json() == task
    missing = client.get(f"{TASKS}/999999")
    assert missing.status_code == 404
    assert missing.json() == {"detail": "task 999999 not found"}


def test_list_is_newest_first_filters_and_pages(client: TestClient) -> None:
    ids = [enqueue(client, payload={"i": i})["task_id"] for i in range(5)]
    other = client.post(TASKS, json={"type": "demo.other"}).json()["task_id"]
    assert [t["task_id"] for t in client.get(TASKS).json()] == [other, *reversed(ids)]
    by_type = client.get(TASKS, params={"type": "demo.echo"}).json()
    assert [t["task_id"] for t in by_type] == list(reversed(ids))
    page1 = client.get(TASKS, params={"type": "demo.echo", "limit": 2}).json()
    page2 = client.get(
        TASKS, params={"type": "demo.echo", "limit": 2, "before_id": page1[-1]["task_id"]}
    ).json()
    page3 = client.get(
        TASKS, params={"type": "demo.echo", "limit": 2, "before_id": page2[-1]["task_id"]}
    ).json()
    assert [t["task_id"] for t in page1 + page2 + page3] == list(reversed(ids))
    client.post(f"{TASKS}/{ids[0]}/cancel")
    cancelled = client.get(TASKS, params={"status": "cancelled"}).json()
    assert [t["task_id"] for t in cancelled] == [ids[0]]
    assert client.get(TASKS, params={"status": "queued", "type": "nothing.here"}).json() == []


def test_empty_filters_count_as_absent(client: TestClient) -> None:
    task = enqueue(client)
    response = client.get(f"{TASKS}?status=&type=&limit=&before_id=")
    assert response.status_code == 200, response.text
    assert [t["task_id"] for t in response.json()] == [task["task_id"]]
    assert client.get(f"{TASKS}?status=&type=&limit=100&before_id=").status_code == 200


BAD_QUERIES: list[dict[str, object]] = [
    {"status": "running"},
    {"limit": 0},
    {"limit": 1001},
    {"before_id": 0},
    {"before_id": 2**63},
    {"type": "has space"},
    {"type": "x" * 201},
    {"limit": "ten"},
]


def test_list_rejects_bad_query_with_422(client: TestClient) -> None:
    for params in BAD_QUERIES:
        response = client.get(TASKS, params=params)
        assert response.status_code == 422, params
        assert isinstance(response.json()["detail"], list)


def test_cancel_queued_task_is_200_cancelled(client: TestClient) -> None:
    task = enqueue(client)
    response = client.post(f"{TASKS}/{task['task_id']}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert response.json()["finished_at_utc"] is not None


def test_cancel_leased_task_is_202_with_cancel_requested(
    client: TestClient, db_for: Database
) -> None:
    task = enqueue(client)
    lease(db_for)
    response = client.post(f"{TASKS}/{task['task_id']}/cancel")
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "leased"
    assert body["cancel_requested"] is True
    assert client.get(f"{TASKS}/{task['task_id']}").json()["cancel_requested"] is True


def test_cancel_terminal_task_is_409_and_unknown_404(client: TestClient) -> None:
    task = enqueue(client)
    assert client.post(f"{TASKS}/{task['task_id']}/cancel").status_code == 200
    again = client.post(f"{TASKS}/{task['task_id']}/cancel")
    assert again.status_code == 409
    assert "cancelled" in again.json()["detail"]
    assert client.post(f"{TASKS}/424242/cancel").status_code == 404


def test_retry_failed_and_cancelled_tasks(client: TestClient, db_for: Database) -> None:
    failed = enqueue(client)
    leases = LeaseRepository(db_for)
    [claimed] = leases.claim("w1", ["demo.echo"])
    leases.fail(claimed.lease, "boom", permanent=True)
    assert client.get(f"{TASKS}/{failed['task_id']}").json()["status"] == "failed"
    response = client.post(f"{TASKS}/{failed['task_id']}/retry")
    assert response.status_code == 200
    assert response.json()["status"] == "queued"
    assert response.json()["attempts"] == 0

    cancelled = enqueue(client)
    client.post(f"{TASKS}/{cancelled['task_id']}/cancel")
    assert client.post(f"{TASKS}/{cancelled['task_id']}/retry").json()["status"] == "queued"


def test_retry_other_states_is_409_and_unknown_404(client: TestClient) -> None:
    task = enqueue(client)
    response = client.post(f"{TASKS}/{task['task_id']}/retry")
    assert response.status_code == 409
    assert "queued" in response.json()["detail"]
    assert client.post(f"{TASKS}/424242/retry").status_code == 404


def test_logs_list_the_history(client: TestClient) -> None:
    task = enqueue(client)
    client.post(f"{TASKS}/{task['task_id']}/cancel")
    response = client.get(f"{TASKS}/{task['task_id']}/logs")
    assert response.status_code == 200
    logs = response.json()
    assert [entry["message"] for entry in logs] == ["enqueued", "cancelled"]
    assert set(logs[0]) == {"log_id", "task_id", "at_utc", "level", "message", "details"}
    assert client.get(f"{TASKS}/424242/logs").status_code == 404


def test_impossible_task_ids_are_422(client: TestClient) -> None:
    for task_id in ("0", str(2**63)):
        for suffix in ("", "/logs"):
            assert client.get(f"{TASKS}/{task_id}{suffix}").status_code == 422, task_id
        for action in ("cancel", "retry"):
            assert client.post(f"{TASKS}/{task_id}/{action}").status_code == 422, task_id


def test_paths_that_hold_no_number_name_no_task(client: TestClient) -> None:
    """`/tasks/{task_id}` matches digits only: `GET /tasks/batch` is the batch route's 405
    (issue 12 item 21), other words are 404."""
    response = client.get(f"{TASKS}/batch")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    # Allow names every method of the path, not only those of its first route.
    response = client.options(TASKS)
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"
    for task_id in ("abc", "-1", "1.5"):
        assert client.get(f"{TASKS}/{task_id}").status_code == 404, task_id
        assert client.post(f"{TASKS}/{task_id}/cancel").status_code == 404, task_id


def test_batch_enqueues_all_in_order(client: TestClient) -> None:
    body = {"tasks": [{"type": "demo.echo", "payload": {"i": i}} for i in range(3)]}
    response = client.post(f"{TASKS}/batch", json=body)
    assert response.status_code == 201
    tasks = response.json()["tasks"]
    assert [t["payload"]["i"] for t in tasks] == [0, 1, 2]
    assert len({t["task_id"] for t in tasks}) == 3


@pytest.mark.parametrize("count", [0, 1001])
def test_batch_size_outside_1_to_1000_is_422(client: TestClient, count: int) -> None:
    body = {"tasks": [{"type": "demo.echo"}] * count}
    assert client.post(f"{TASKS}/batch", json=body).status_code == 422
    assert client.get(TASKS).json() == []


def test_batch_of_1000_is_accepted(client: TestClient) -> None:
    body = {"tasks": [{"type": "demo.echo", "payload": {"i": i}} for i in range(1000)]}
    response = client.post(f"{TASKS}/batch", json=body)
    assert response.status_code == 201
    assert len(response.json()["tasks"]) == 1000


def test_batch_is_all_or_nothing(make_client: object) -> None:
    client = make_client(payload_max_bytes=64)  # type: ignore[operator]
    ok = {"type": "demo.echo", "payload": {"i": 1}}
    too_big = {"type": "demo.echo", "payload": {"s": "x" * 100}}
    response = client.post(f"{TASKS}/batch", json={"tasks": [ok, too_big]})
    assert response.status_code == 413
    invalid = client.post(f"{TASKS}/batch", json={"tasks": [ok, {"type": "bad type"}]})
    assert invalid.status_code == 422
    assert client.get(TASKS).json() == []


def test_batch_idempotency_conflict_is_409_and_enqueues_nothing(client: TestClient) -> None:
    enqueue(client, payload={"v": 1}, idempotency_key="k")
    batch = {
        "tasks": [
            {"type": "demo.echo", "payload": {"v": 9}},
            {"type": "demo.echo", "payload": {"v": 2}, "idempotency_key": "k"},
        ]
    }
    assert client.post(f"{TASKS}/batch", json=batch).status_code == 409
    assert len(client.get(TASKS).json()) == 1


def test_stats_and_workers(client: TestClient, db_for: Database) -> None:
    enqueue(client)
    enqueue(client, type="demo.other")
    lease(db_for)
    WorkerRepository(db_for).register("w1", capabilities={"region": "us"})
    stats = client.get("/api/queue/stats").json()
    assert stats["total_tasks"] == 2
    assert stats["queued_tasks"] == 1
    assert stats["leased_tasks"] == stats["processing_tasks"] == 1
    assert stats["by_type"] == {"demo.echo": {"leased": 1}, "demo.other": {"queued": 1}}
    assert stats["workers_active"] == 1
    assert stats["oldest_queued_age_seconds"] >= 0
    [worker] = client.get("/api/queue/workers").json()
    assert worker["worker_id"] == "w1"
    assert worker["status"] == "active"
    assert worker["capabilities"] == {"region": "us"}
