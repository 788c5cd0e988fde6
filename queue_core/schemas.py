"""Pydantic models shared by the repositories, the REST API and the CLI (CONTRACT §8)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    field_validator,
)

from queue_core.clock import ensure_utc
from queue_core.settings import (
    DEPENDS_ON_MAX,
    IDEMPOTENCY_KEY_MAX_LENGTH,
    MAX_ATTEMPTS_DEFAULT,
    MAX_ATTEMPTS_MAX,
    MAX_ATTEMPTS_MIN,
    PRIORITY_DEFAULT,
    PRIORITY_MAX,
    PRIORITY_MIN,
    SCHEDULE_CATCH_UP_DEFAULT,
    SCHEDULE_NAME_MAX_LENGTH,
    SCHEDULE_TIMEZONE_DEFAULT,
    TYPE_MAX_LENGTH,
    TYPE_PATTERN,
)
from queue_core.states import TaskStatus
from queue_core.validation import INT64_MAX, INT64_MIN

# ISO-8601 with an explicit "+00:00" offset: Python 3.10's datetime.fromisoformat rejects "Z".
UtcTimestamp = Annotated[
    datetime, PlainSerializer(lambda value: value.isoformat(), return_type=str, when_used="json")
]

TaskType = Annotated[
    str,
    Field(min_length=1, max_length=TYPE_MAX_LENGTH, pattern=TYPE_PATTERN, examples=["demo.echo"]),
]
Priority = Annotated[int, Field(ge=PRIORITY_MIN, le=PRIORITY_MAX)]
MaxAttempts = Annotated[int, Field(ge=MAX_ATTEMPTS_MIN, le=MAX_ATTEMPTS_MAX)]
# No U+0000: PostgreSQL text and jsonb cannot hold it (an ECMA and Python regular expression).
NO_NUL_PATTERN = r"^[^\u0000]*$"
IdempotencyKey = Annotated[
    str, Field(min_length=1, max_length=IDEMPOTENCY_KEY_MAX_LENGTH, pattern=NO_NUL_PATTERN)
]

# What a payload or compatibility document may hold, as the OpenAPI document states it: any
# JSON but strings with U+0000 and numbers outside the signed 64-bit range (the checks of
# queue_core.validation, which also bound size and depth). The API publishes JSON_VALUE_SCHEMA
# under this name in its components.
JSON_VALUE_SCHEMA_NAME = "JsonValue"
_JSON_VALUE_REF = {"$ref": f"#/components/schemas/{JSON_VALUE_SCHEMA_NAME}"}
JSON_OBJECT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "propertyNames": {"pattern": NO_NUL_PATTERN},
    "additionalProperties": _JSON_VALUE_REF,
}
JSON_VALUE_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "pattern": NO_NUL_PATTERN},
        {"type": "number", "minimum": INT64_MIN, "maximum": INT64_MAX},
        {"type": "boolean"},
        {"type": "null"},
        {"type": "array", "items": _JSON_VALUE_REF},
        JSON_OBJECT_SCHEMA,
    ]
}
JsonObject = Annotated[dict[str, Any], WithJsonSchema(JSON_OBJECT_SCHEMA, mode="validation")]
# A task id a client names: BIGINT on PostgreSQL, so a larger number can name no task.
TaskIdRef = Annotated[int, Field(ge=1, le=2**63 - 1)]
ScheduleName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=SCHEDULE_NAME_MAX_LENGTH,
        pattern=TYPE_PATTERN,
        examples=["report.daily"],
    ),
]


class TaskCreate(BaseModel):
    """What a producer sends to enqueue one task."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "type": "demo.echo",
                    "payload": {"n": 1},
                    "priority": 50,
                    "compatibility": {"region": "us"},
                    "idempotency_key": "order-1234",
                }
            ]
        },
    )

    type: TaskType
    payload: JsonObject = Field(default_factory=dict)
    priority: Priority = PRIORITY_DEFAULT
    compatibility: JsonObject = Field(default_factory=dict)
    max_attempts: MaxAttempts = MAX_ATTEMPTS_DEFAULT
    run_after_utc: datetime | None = None
    idempotency_key: IdempotencyKey | None = None
    timeout_seconds: Annotated[float, Field(gt=0, le=7 * 86_400)] | None = None
    depends_on: list[TaskIdRef] = Field(
        default_factory=list,
        max_length=DEPENDS_ON_MAX,
        description="Ids of existing tasks that must all complete before this one can run.",
    )

    @field_validator("depends_on")
    @classmethod
    def _unique(cls, value: list[int]) -> list[int]:
        return list(dict.fromkeys(value))

    @field_validator("run_after_utc", mode="before")
    @classmethod
    def _not_a_number(cls, value: Any) -> Any:
        # pydantic would read a number as Unix seconds; the document says a date-time string.
        if isinstance(value, int | float) and not isinstance(value, bool):
            raise ValueError("must be an ISO-8601 date-time string with a UTC offset")
        return value

    @field_validator("run_after_utc")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return ensure_utc(value) if value is not None else None


class Task(BaseModel):
    """A task as clients see it (CONTRACT §8 task object)."""

    model_config = ConfigDict(from_attributes=True)

    task_id: int
    type: str
    status: TaskStatus
    priority: int
    attempts: int
    max_attempts: int
    payload: dict[str, Any]
    compatibility: dict[str, Any]
    idempotency_key: str | None
    run_after_utc: UtcTimestamp
    created_at_utc: UtcTimestamp
    updated_at_utc: UtcTimestamp
    processing_started_utc: UtcTimestamp | None
    finished_at_utc: UtcTimestamp | None
    locked_by: str | None
    lease_until_utc: UtcTimestamp | None
    cancel_requested: bool
    error_message: str | None
    result: Any | None
    timeout_seconds: float | None = None
    depends_on: list[int] = Field(default_factory=list)
    schedule: str | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status in (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED)


class TaskLog(BaseModel):
    log_id: int
    task_id: int
    at_utc: UtcTimestamp
    level: str
    message: str
    details: dict[str, Any] | None


class QueueStats(BaseModel):
    total_tasks: int
    queued_tasks: int
    leased_tasks: int
    processing_tasks: int = Field(description="The same as leased_tasks, kept for older clients.")
    completed_tasks: int
    failed_tasks: int
    cancelled_tasks: int
    oldest_queued_age_seconds: float | None = Field(
        description="Seconds since the oldest due queued task became due; null when none is due."
    )
    by_type: dict[str, dict[str, int]] = Field(
        description="Per task type, the count of tasks in each status."
    )
    workers_active: int


class WorkerInfo(BaseModel):
    worker_id: str
    capabilities: dict[str, Any]
    heartbeat_utc: UtcTimestamp
    status: str = Field(description="`active` or `stale`.", examples=["active"])
    started_at_utc: UtcTimestamp | None = None
    stopped_at_utc: UtcTimestamp | None = None
    hostname: str | None = None
    pid: int | None = None
    task_types: list[str] = Field(default_factory=list)
    concurrency: int = 1
    strategy: str | None = None


CatchUpPolicy = Literal["latest", "none", "all"]


class ScheduleCreate(BaseModel):
    """A periodic task to add (CONTRACT §8 ``POST /api/queue/schedules``)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "report.daily",
                    "type": "report.daily",
                    "cron": "0 6 * * *",
                    "timezone": "Europe/Prague",
                }
            ]
        },
    )

    name: ScheduleName
    type: TaskType
    cron: Annotated[str, Field(min_length=1, max_length=200, examples=["0 6 * * *"])]
    timezone: Annotated[str, Field(min_length=1, max_length=100)] = SCHEDULE_TIMEZONE_DEFAULT
    payload: JsonObject = Field(default_factory=dict)
    priority: Priority = PRIORITY_DEFAULT
    catch_up: CatchUpPolicy = SCHEDULE_CATCH_UP_DEFAULT  # type: ignore[assignment]


class Schedule(BaseModel):
    """A schedule as clients see it."""

    name: str
    type: str
    cron: str
    timezone: str
    payload: dict[str, Any]
    priority: int
    catch_up: str
    paused: bool
    source: str = Field(description="`api` (added by an operator) or `code` (`@task(cron=...)`).")
    next_due_utc: UtcTimestamp = Field(description="The next due time not enqueued yet.")
    last_due_utc: UtcTimestamp | None
    last_task_id: int | None
    created_at_utc: UtcTimestamp
    updated_at_utc: UtcTimestamp


class Rate(BaseModel):
    """At most ``count`` claims in any window of ``per_seconds``."""

    model_config = ConfigDict(extra="forbid")

    count: Annotated[int, Field(ge=1, le=2**31 - 1)]
    per_seconds: Annotated[float, Field(gt=0, le=366 * 86_400)]


class TypeLimits(BaseModel):
    """``PUT /api/queue/types/{type}/limits``: null (or absent) clears a limit."""

    model_config = ConfigDict(extra="forbid")

    max_running: Annotated[int, Field(ge=1, le=2**31 - 1)] | None = None
    rate: Rate | None = None


class TaskTypeInfo(BaseModel):
    """One task type's flow control and load (``GET /api/queue/types``)."""

    type: str
    paused: bool
    max_running: int | None
    rate: Rate | None
    queued: int
    leased: int
