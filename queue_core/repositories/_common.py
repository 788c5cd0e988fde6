"""Pieces the repositories share: tables, row conversion, task-log writing, validation."""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Connection, Row, Table, insert

from queue_core.errors import QueueError
from queue_core.models import TaskLogRow, TaskRow, WorkerRow
from queue_core.schemas import Task, TaskLog
from queue_core.settings import QueueSettings
from queue_core.states import TaskStatus

TASKS: Table = TaskRow.__table__  # type: ignore[assignment]
LOGS: Table = TaskLogRow.__table__  # type: ignore[assignment]
WORKERS: Table = WorkerRow.__table__  # type: ignore[assignment]

INSERT_LOG = insert(LOGS)


class PayloadTooLarge(QueueError):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"payload is {size} bytes; the limit is {limit}")
        self.size = size
        self.limit = limit


class InvalidPayload(QueueError):
    """The payload cannot be stored: not JSON, or nested too deep."""


def json_depth(value: Any, limit: int) -> int:
    """Nesting depth of a JSON value, stopping early past ``limit``."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Iterable[Any] = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest


EMPTY_DOCUMENT = "{}"


def check_document(name: str, value: Mapping[str, Any], settings: QueueSettings) -> int:
    """Validate a payload or compatibility document; returns its serialised size."""
    return len(encode_document(name, value, settings))


def encode_document(name: str, value: Mapping[str, Any], settings: QueueSettings) -> str:
    """Validate a payload or compatibility document; returns it as the JSON text to store."""
    if not value and isinstance(value, dict) and settings.payload_max_bytes >= len(EMPTY_DOCUMENT):
        return EMPTY_DOCUMENT  # the common empty compatibility: nothing to check
    try:
        encoded = orjson.dumps(value)
    except TypeError as exc:
        raise InvalidPayload(f"{name} is not JSON-serialisable: {exc}") from exc
    if len(encoded) > settings.payload_max_bytes:
        raise PayloadTooLarge(len(encoded), settings.payload_max_bytes)
    # Every level of nesting opens a bracket in the text: only a document with more brackets
    # than the limit can be too deep, and only then is it walked.
    limit = settings.json_max_depth
    if encoded.count(b"{") + encoded.count(b"[") > limit and json_depth(value, limit) > limit:
        raise InvalidPayload(f"{name} is nested deeper than {limit} levels")
    # orjson writes NaN and Infinity as null (the value would silently change), and jsonb
    # cannot hold U+0000. Both leave a trace in the bytes, so only then is the value walked.
    if b"null" in encoded or b"\\u0000" in encoded:
        problem = _unstorable(value)
        if problem:
            raise InvalidPayload(f"{name} {problem}")
    return encoded.decode()


def _unstorable(value: Any) -> str | None:
    """Why a JSON-serialisable value cannot be stored unchanged, or None."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return f"holds {item!r}: JSON has no NaN or Infinity"
        if isinstance(item, str) and "\x00" in item:
            return "holds a NUL character (U+0000), which PostgreSQL cannot store"
        if isinstance(item, Mapping):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return None


def json_equal(a: Any, b: Any) -> bool:
    """Equal as JSON values. Python's ``==`` is not: it calls ``True == 1`` and
    ``{"on": False} == {"on": 0}``. Numbers compare by value (``1`` is ``1.0``)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict):
        return (
            isinstance(b, dict)
            and a.keys() == b.keys()
            and all(json_equal(value, b[key]) for key, value in a.items())
        )
    if isinstance(a, list):
        return (
            isinstance(b, list)
            and len(a) == len(b)
            and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
        )
    if isinstance(a, int | float):
        return isinstance(b, int | float) and a == b
    return type(a) is type(b) and a == b


def task_from_row(row: Row[Any]) -> Task:
    mapping = row._mapping
    return Task.model_construct(
        task_id=mapping["id"],
        type=mapping["type"],
        status=TaskStatus(mapping["status"]),
        priority=mapping["priority"],
        attempts=mapping["attempts"],
        max_attempts=mapping["max_attempts"],
        payload=mapping["payload"],
        compatibility=mapping["compatibility"],
        idempotency_key=mapping["idempotency_key"],
        run_after_utc=mapping["run_after_utc"],
        created_at_utc=mapping["created_at_utc"],
        updated_at_utc=mapping["updated_at_utc"],
        processing_started_utc=mapping["processing_started_utc"],
        finished_at_utc=mapping["finished_at_utc"],
        locked_by=mapping["locked_by"],
        lease_until_utc=mapping["lease_until_utc"],
        cancel_requested=bool(mapping["cancel_requested"]),
        error_message=mapping["error_message"],
        result=mapping["result"],
        timeout_seconds=mapping["timeout_seconds"],
    )


def log_from_row(row: Row[Any]) -> TaskLog:
    m = row._mapping
    return TaskLog(
        log_id=m["log_id"],
        task_id=m["task_id"],
        at_utc=m["at_utc"],
        level=m["level"],
        message=m["message"],
        details=m["details"],
    )


def log_entry(
    task_id: int,
    message: str,
    now: datetime,
    *,
    level: str = "INFO",
    **details: Any,
) -> dict[str, Any]:
    """One task_logs row; ``details`` keeps only the keys that have a value."""
    return {
        "task_id": task_id,
        "at_utc": now,
        "level": level,
        "message": message,
        "details": {key: value for key, value in details.items() if value is not None} or None,
    }


def write_logs(conn: Connection, entries: list[dict[str, Any]]) -> None:
    if entries:
        conn.execute(INSERT_LOG, entries)


def jittered(delay: float, fraction: float, rng: random.Random) -> float:
    """``delay`` spread by up to ±fraction, so retries of many tasks do not arrive together."""
    return max(0.0, delay * (1 + rng.uniform(-fraction, fraction)))
