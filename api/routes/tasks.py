"""/api/queue/tasks: enqueue (one or a batch), inspect, cancel, retry, logs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response, Security
from fastapi.concurrency import run_in_threadpool
from pydantic import BeforeValidator, Field

from api.deps import Tasks
from api.errors import VALIDATION_ERROR_RESPONSE, error_responses
from api.examples import (
    CANCEL_REQUESTED_EXAMPLE,
    CANCELLED_TASK_EXAMPLE,
    TASK_EXAMPLE,
    TASK_LOG_EXAMPLE,
    json_example,
)
from api.limits import LimitedJSONRoute
from api.models import TaskBatch, TaskBatchCreate
from api.responses import json_model
from api.security import bearer_scheme
from queue_core.errors import TaskWaitTimeout
from queue_core.schemas import Task, TaskCreate, TaskLog
from queue_core.settings import (
    LIST_LIMIT_DEFAULT,
    LIST_LIMIT_MAX,
    TYPE_MAX_LENGTH,
    TYPE_PATTERN,
    WAIT_REST_MAX_SECONDS,
)
from queue_core.states import TaskStatus

# Ids are BIGINT on PostgreSQL: a larger number can name no task and must not reach the driver.
ID_MAX = 2**63 - 1

# Task paths match digits only (`{task_id:int}`), so `GET /tasks/batch` is the batch route's 405
# (with its Allow header), not a 422 about an id, and `/tasks/abc` is a 404.


def _empty_is_absent(value: object) -> object:
    return None if value == "" else value


EMPTY_VALUE: dict[str, Any] = {"type": "string", "maxLength": 0}


def _or_empty(schema: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    """Rewrites a query parameter's OpenAPI schema to also take the empty value (as absent)."""

    def rewrite(generated: dict[str, Any]) -> None:
        kept = {k: v for k, v in generated.items() if k in ("title", "description", "default")}
        generated.clear()
        generated.update(kept, anyOf=[schema, EMPTY_VALUE])

    return rewrite


# Constraints sit on the inner types so that an empty value, mapped to None first, skips them.
TypeFilter = Annotated[str, Field(max_length=TYPE_MAX_LENGTH, pattern=TYPE_PATTERN)]
ListLimit = Annotated[int, Field(ge=1, le=LIST_LIMIT_MAX)]
BeforeId = Annotated[int, Field(ge=1, le=ID_MAX)]

TaskId = Annotated[int, Path(ge=1, le=ID_MAX, description="The task's id.", examples=[42])]

router = APIRouter(
    prefix="/api/queue",
    tags=["tasks"],
    route_class=LimitedJSONRoute,
    dependencies=[Security(bearer_scheme)],
    responses={**error_responses(401, 503), 422: VALIDATION_ERROR_RESPONSE},
)


ENQUEUE_RESPONSES: dict[int | str, dict[str, Any]] = {
    201: {"content": json_example(TASK_EXAMPLE)},
    200: {
        "model": Task,
        "description": "The idempotency key was replayed with the same type and payload: "
        "the task it created earlier, unchanged.",
        "content": json_example(TASK_EXAMPLE),
    },
    **error_responses(
        409,
        413,
        415,
        d409="The idempotency key is already used with another type or payload.",
        e409="idempotency key 'order-1234' is already used by task 42 with a different "
        "type or payload",
    ),
}


@router.post(
    "/tasks",
    status_code=201,
    response_model=Task,
    summary="Enqueue a task",
    response_description="The new task.",
    responses=ENQUEUE_RESPONSES,
)
@router.post(
    "/enqueue",
    status_code=201,
    response_model=Task,
    summary="Enqueue a task (alias of POST /api/queue/tasks)",
    response_description="The new task.",
    responses=ENQUEUE_RESPONSES,
)
def enqueue_task(spec: TaskCreate, tasks: Tasks) -> Response:
    """Enqueue one task. With an `idempotency_key`, a replay with the same type and payload
    answers 200 with the task created the first time; another type or payload answers 409."""
    result = tasks.enqueue(spec)
    return json_model(result.task, 201 if result.created else 200)


@router.post(
    "/tasks/batch",
    status_code=201,
    response_model=TaskBatch,
    summary="Enqueue up to 1,000 tasks at once",
    response_description="The tasks, in the order they were sent.",
    responses={
        201: {"content": json_example({"tasks": [TASK_EXAMPLE]})},
        **error_responses(
            409,
            413,
            415,
            d409="A task of the batch replays an idempotency key with another type "
            "or payload; nothing was enqueued.",
        ),
    },
)
def enqueue_batch(batch: TaskBatchCreate, tasks: Tasks) -> Response:
    """All or nothing: on any error no task of the batch is enqueued."""
    return json_model(TaskBatch(tasks=tasks.enqueue_many(batch.tasks)), 201)


@router.get(
    "/tasks",
    response_model=list[Task],
    summary="List tasks, newest first",
    responses={200: {"content": json_example([TASK_EXAMPLE])}},
)
def list_tasks(
    tasks: Tasks,
    status: Annotated[
        TaskStatus | None,
        BeforeValidator(_empty_is_absent),
        Query(
            description="Only tasks in this state.",
            json_schema_extra=_or_empty({"$ref": "#/components/schemas/TaskStatus"}),
        ),
    ] = None,
    type: Annotated[
        TypeFilter | None,
        BeforeValidator(_empty_is_absent),
        Query(
            description="Only tasks of this type.",
            json_schema_extra=_or_empty(
                {"type": "string", "maxLength": TYPE_MAX_LENGTH, "pattern": TYPE_PATTERN}
            ),
        ),
    ] = None,
    limit: Annotated[
        ListLimit,
        BeforeValidator(lambda value: LIST_LIMIT_DEFAULT if value == "" else value),
        Query(
            description="At most this many tasks.",
            json_schema_extra=_or_empty(
                {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": LIST_LIMIT_MAX,
                    "default": LIST_LIMIT_DEFAULT,
                }
            ),
        ),
    ] = LIST_LIMIT_DEFAULT,
    before_id: Annotated[
        BeforeId | None,
        BeforeValidator(_empty_is_absent),
        Query(
            description="Only tasks with a smaller id: pass the last `task_id` of a page to "
            "get the next page.",
            json_schema_extra=_or_empty({"type": "integer", "minimum": 1, "maximum": ID_MAX}),
        ),
    ] = None,
) -> Response:
    """Every filter is optional, and an empty one (`?status=&type=`) counts as absent, as
    existing clients send it."""
    return json_model(tasks.list(status=status, type=type, limit=limit, before_id=before_id))


@router.get(
    "/tasks/{task_id:int}",
    response_model=Task,
    summary="Get a task (optionally waiting until it is finished)",
    responses={200: {"content": json_example(TASK_EXAMPLE)}, **error_responses(404)},
)
async def get_task(
    task_id: TaskId,
    tasks: Tasks,
    wait: Annotated[
        float | None,
        Query(
            ge=0,
            le=WAIT_REST_MAX_SECONDS,
            description="Wait up to this many seconds for the task to be completed, failed or "
            "cancelled: the answer comes as soon as it is, or at the deadline with the task "
            "as it is then (check `status`).",
        ),
    ] = None,
) -> Response:
    """With `wait`, a long poll: the server answers as soon as the task is finished (on
    PostgreSQL a notification wakes it; on SQLite it re-reads the task once per poll interval)
    and holds neither a database connection nor a thread in between."""
    if not wait:
        return json_model(await run_in_threadpool(tasks.get, task_id))
    try:
        task = await tasks.wait_async(task_id, wait)
    except TaskWaitTimeout as exc:
        task = exc.task
    return json_model(task)


@router.post(
    "/tasks/{task_id:int}/cancel",
    response_model=Task,
    summary="Cancel a task",
    response_description="The task was queued and is now cancelled.",
    responses={
        200: {"content": json_example(CANCELLED_TASK_EXAMPLE)},
        202: {
            "model": Task,
            "description": "The task is running: `cancel_requested` is now true, and its worker "
            "stops it and marks it cancelled.",
            "content": json_example(CANCEL_REQUESTED_EXAMPLE),
        },
        **error_responses(
            404,
            409,
            d409="The task is already completed, failed or cancelled.",
            e409="cannot cancel task 42: it is completed",
        ),
    },
)
def cancel_task(task_id: TaskId, tasks: Tasks) -> Response:
    result = tasks.cancel(task_id)
    return json_model(result.task, 200 if result.immediate else 202)


@router.post(
    "/tasks/{task_id:int}/retry",
    response_model=Task,
    summary="Re-queue a failed or cancelled task",
    response_description="The task, queued again with a fresh set of attempts.",
    responses={
        200: {"content": json_example(TASK_EXAMPLE)},
        **error_responses(404, 409, d409="The task is neither failed nor cancelled."),
    },
)
def retry_task(task_id: TaskId, tasks: Tasks) -> Response:
    return json_model(tasks.retry(task_id))


@router.get(
    "/tasks/{task_id:int}/logs",
    response_model=list[TaskLog],
    summary="A task's history",
    response_description="Every recorded event of the task, oldest first.",
    responses={200: {"content": json_example([TASK_LOG_EXAMPLE])}, **error_responses(404)},
)
def task_logs(task_id: TaskId, tasks: Tasks) -> Response:
    return json_model(tasks.logs(task_id))
