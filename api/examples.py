"""Example bodies for the OpenAPI document (and a reader of it)."""

from __future__ import annotations

from typing import Any

TASK_CREATE_EXAMPLE: dict[str, Any] = {
    "type": "demo.echo",
    "payload": {"n": 1},
    "priority": 50,
    "compatibility": {"region": "us"},
    "max_attempts": 5,
    "idempotency_key": "order-1234",
}

TASK_EXAMPLE: dict[str, Any] = {
    "task_id": 42,
    "type": "demo.echo",
    "status": "queued",
    "priority": 50,
    "attempts": 0,
    "max_attempts": 5,
    "payload": {"n": 1},
    "compatibility": {"region": "us"},
    "idempotency_key": "order-1234",
    "run_after_utc": "2026-01-05T09:30:00.123456+00:00",
    "created_at_utc": "2026-01-05T09:30:00.123456+00:00",
    "updated_at_utc": "2026-01-05T09:30:00.123456+00:00",
    "processing_started_utc": None,
    "finished_at_utc": None,
    "locked_by": None,
    "lease_until_utc": None,
    "cancel_requested": False,
    "error_message": None,
    "result": None,
    "timeout_seconds": None,
    "depends_on": [],
    "schedule": None,
}

CANCELLED_TASK_EXAMPLE: dict[str, Any] = {
    **TASK_EXAMPLE,
    "status": "cancelled",
    "finished_at_utc": "2026-01-05T09:31:00.000000+00:00",
    "updated_at_utc": "2026-01-05T09:31:00.000000+00:00",
}

CANCEL_REQUESTED_EXAMPLE: dict[str, Any] = {
    **TASK_EXAMPLE,
    "status": "leased",
    "attempts": 1,
    "locked_by": "host-1234",
    "processing_started_utc": "2026-01-05T09:30:01.000000+00:00",
    "lease_until_utc": "2026-01-05T09:30:31.000000+00:00",
    "cancel_requested": True,
}

TASK_LOG_EXAMPLE: dict[str, Any] = {
    "log_id": 7,
    "task_id": 42,
    "at_utc": "2026-01-05T09:30:00.123456+00:00",
    "level": "INFO",
    "message": "enqueued",
    "details": {"event": "enqueued", "type": "demo.echo", "priority": 50},
}

STATS_EXAMPLE: dict[str, Any] = {
    "total_tasks": 12,
    "queued_tasks": 3,
    "leased_tasks": 1,
    "processing_tasks": 1,
    "completed_tasks": 7,
    "failed_tasks": 1,
    "cancelled_tasks": 0,
    "oldest_queued_age_seconds": 4.2,
    "by_type": {"demo.echo": {"queued": 3, "leased": 1, "completed": 7, "failed": 1}},
    "workers_active": 1,
}

WORKER_EXAMPLE: dict[str, Any] = {
    "worker_id": "host-1234",
    "capabilities": {"region": "us"},
    "heartbeat_utc": "2026-01-05T09:30:10.000000+00:00",
    "status": "active",
    "started_at_utc": "2026-01-05T09:00:00.000000+00:00",
    "stopped_at_utc": None,
    "hostname": "host",
    "pid": 1234,
    "task_types": ["demo.echo"],
    "concurrency": 1,
    "strategy": "priority",
}


def json_example(value: Any) -> dict[str, Any]:
    """The `content` entry of an OpenAPI response that shows one example body."""
    return {"application/json": {"example": value}}
