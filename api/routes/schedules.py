"""/api/queue/schedules and /api/queue/types: periodic tasks and flow control (CONTRACT §8, §9)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response, Security

from api.deps import schedules_of, types_of
from api.errors import VALIDATION_ERROR_RESPONSE, error_responses
from api.limits import LimitedJSONRoute
from api.responses import json_model
from api.security import bearer_scheme
from queue_core.schemas import Schedule, ScheduleCreate, Task, TaskTypeInfo, TypeLimits
from queue_core.settings import SCHEDULE_NAME_MAX_LENGTH, TYPE_MAX_LENGTH, TYPE_PATTERN

ScheduleName = Annotated[
    str,
    Path(
        min_length=1,
        max_length=SCHEDULE_NAME_MAX_LENGTH,
        pattern=TYPE_PATTERN,
        description="The schedule's name.",
        examples=["report.daily"],
    ),
]
TypeName = Annotated[
    str,
    Path(
        min_length=1,
        max_length=TYPE_MAX_LENGTH,
        pattern=TYPE_PATTERN,
        description="The task type.",
        examples=["demo.echo"],
    ),
]

router = APIRouter(
    prefix="/api/queue",
    tags=["flow control"],
    route_class=LimitedJSONRoute,
    dependencies=[Security(bearer_scheme)],
    responses={**error_responses(401, 503), 422: VALIDATION_ERROR_RESPONSE},
)

_NOT_FOUND: dict[int | str, dict[str, Any]] = error_responses(
    404, d404="No schedule has this name.", e404="schedule 'report.daily' not found"
)


# --- schedules ---


@router.get("/schedules", response_model=list[Schedule], summary="List schedules")
def list_schedules(request: Request) -> Response:
    """Every schedule, by name."""
    return json_model(schedules_of(request).list())


@router.post(
    "/schedules",
    status_code=201,
    response_model=Schedule,
    summary="Add a schedule",
    responses=error_responses(
        409, d409="A schedule of this name exists.", e409="schedule 'report.daily' already exists"
    ),
)
def add_schedule(spec: ScheduleCreate, request: Request) -> Response:
    """Enqueue one task of `type` at each time the five-field `cron` expression names, in
    `timezone` (IANA). It starts at its first due time after now. A bad cron expression or
    time zone is 422."""
    return json_model(schedules_of(request).add(spec), 201)


@router.get(
    "/schedules/{name}", response_model=Schedule, summary="One schedule", responses=_NOT_FOUND
)
def get_schedule(name: ScheduleName, request: Request) -> Response:
    return json_model(schedules_of(request).get(name))


@router.delete(
    "/schedules/{name}", response_model=Schedule, summary="Remove a schedule", responses=_NOT_FOUND
)
def remove_schedule(name: ScheduleName, request: Request) -> Response:
    """Remove the schedule and answer it as it was; the tasks it enqueued stay."""
    repository = schedules_of(request)
    schedule = repository.get(name)
    repository.remove(name)
    return json_model(schedule)


@router.post(
    "/schedules/{name}/pause",
    response_model=Schedule,
    summary="Pause a schedule",
    responses=_NOT_FOUND,
)
def pause_schedule(name: ScheduleName, request: Request) -> Response:
    """No task is enqueued for its due times until it is resumed."""
    return json_model(schedules_of(request).pause(name))


@router.post(
    "/schedules/{name}/resume",
    response_model=Schedule,
    summary="Resume a schedule",
    responses=_NOT_FOUND,
)
def resume_schedule(name: ScheduleName, request: Request) -> Response:
    """It goes on at its first due time after now."""
    return json_model(schedules_of(request).resume(name))


@router.post(
    "/schedules/{name}/run",
    status_code=201,
    response_model=Task,
    summary="Run a schedule now",
    responses=_NOT_FOUND,
)
def run_schedule(name: ScheduleName, request: Request) -> Response:
    """Enqueue one task of the schedule now, outside its due times; answers the task."""
    return json_model(schedules_of(request).run(name), 201)


# --- types ---


@router.get("/types", response_model=list[TaskTypeInfo], summary="Task types and flow control")
def list_types(request: Request) -> Response:
    """Every type with queued or leased tasks, a pause or a limit, or a registered worker:
    `paused`, `max_running`, `rate` and the counts of `queued` and `leased` tasks."""
    return json_model(types_of(request).list())


@router.post("/types/{type}/pause", response_model=TaskTypeInfo, summary="Pause a type")
def pause_type(type: TypeName, request: Request) -> Response:
    """No worker claims tasks of the type from its next claim on; running tasks finish and
    enqueue keeps working. Stored: survives restarts."""
    return json_model(types_of(request).pause(type))


@router.post("/types/{type}/resume", response_model=TaskTypeInfo, summary="Resume a type")
def resume_type(type: TypeName, request: Request) -> Response:
    return json_model(types_of(request).resume(type))


@router.put("/types/{type}/limits", response_model=TaskTypeInfo, summary="Set a type's limits")
def set_type_limits(type: TypeName, limits: TypeLimits, request: Request) -> Response:
    """`max_running`: at most N tasks of the type leased at once over every worker and host.
    `rate`: at most `count` claims in any window of `per_seconds`. Both are enforced in the
    claim transaction. A field sent as null is cleared; a field left out stays as it is."""
    return json_model(types_of(request).set_limits(type, limits))
