"""The dashboard's schedules and types pages and their actions (CONTRACT §9, §10).

Pausing, resuming and running go through the same ``ScheduleRepository`` and
``TypeRepository`` methods as the REST API. A type or a schedule has no task whose log could
record who acted, so these actions are logged by the server (logger ``api.ui``, with
``actor=dashboard``); a task that "Run now" enqueues gets a task_logs row saying the dashboard
started it.
"""

from __future__ import annotations

import logging
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import RedirectResponse, Response

from api.deps import schedules_of, types_of
from api.ui.routes import ACTOR, Form, User, render, router
from api.ui.session import UI_PREFIX
from queue_core.errors import QueueError, ScheduleNotFound
from queue_core.repositories import TaskLogRepository

log = logging.getLogger("api.ui")

NOTICES = {
    "paused": "{what} {name} paused.",
    "resumed": "{what} {name} resumed.",
}


def _field(form: dict[str, list[str]], name: str) -> str:
    return next(iter(form.get(name, [])), "")


@router.get("/types")
def types_page(
    request: Request, user: User, done: str | None = None, name: str | None = None
) -> Response:
    notice = NOTICES[done].format(what="Type", name=name) if done in NOTICES and name else None
    return render(request, user, "types.html", types=types_of(request).list(), notice=notice)


@router.get("/schedules")
def schedules_page(
    request: Request,
    user: User,
    done: str | None = None,
    name: str | None = None,
    task: int | None = None,
) -> Response:
    notice = None
    if done in NOTICES and name:
        notice = NOTICES[done].format(what="Schedule", name=name)
    elif done == "run" and name and task:
        notice = f"Schedule {name} run now: task {task} enqueued."
    return render(
        request, user, "schedules.html", schedules=schedules_of(request).list(), notice=notice
    )


def _failed(request: Request, user: User, error: QueueError) -> Response:
    status = 404 if isinstance(error, ScheduleNotFound) else 409
    return render(request, user, "error.html", status_code=status, message=str(error))


def _back(path: str, **query: str | int) -> Response:
    return RedirectResponse(f"{UI_PREFIX}/{path}?{urlencode(query)}", status_code=303)


@router.post("/types/pause")
def pause_type(request: Request, user: User, form: Form) -> Response:
    return _type_action(request, user, form, "pause")


@router.post("/types/resume")
def resume_type(request: Request, user: User, form: Form) -> Response:
    return _type_action(request, user, form, "resume")


def _type_action(request: Request, user: User, form: dict[str, list[str]], verb: str) -> Response:
    name = _field(form, "type")
    types = types_of(request)
    try:
        if verb == "pause":
            types.pause(name)
        else:
            types.resume(name)
    except (QueueError, ValueError) as error:
        return render(request, user, "error.html", status_code=422, message=str(error))
    log.info("type %s %sd", name, verb, extra={"actor": ACTOR, "task_type": name})
    return _back("types", done=f"{verb}d", name=name)


@router.post("/schedules/pause")
def pause_schedule(request: Request, user: User, form: Form) -> Response:
    return _schedule_action(request, user, form, "pause")


@router.post("/schedules/resume")
def resume_schedule(request: Request, user: User, form: Form) -> Response:
    return _schedule_action(request, user, form, "resume")


@router.post("/schedules/run")
def run_schedule(request: Request, user: User, form: Form) -> Response:
    return _schedule_action(request, user, form, "run")


def _schedule_action(
    request: Request, user: User, form: dict[str, list[str]], verb: str
) -> Response:
    name = _field(form, "name")
    schedules = schedules_of(request)
    try:
        if verb == "run":
            task = schedules.run(name)
        elif verb == "pause":
            schedules.pause(name)
        else:
            schedules.resume(name)
    except QueueError as error:
        return _failed(request, user, error)
    log.info("schedule %s: %s", name, verb, extra={"actor": ACTOR, "schedule": name})
    if verb == "run":
        TaskLogRepository(request.app.state.database).add(
            task.task_id, "run now by operator", event="schedule_run", schedule=name, actor=ACTOR
        )
        request.app.state.ui_counts.invalidate()
        return _back("schedules", done="run", name=name, task=task.task_id)
    return _back("schedules", done=f"{verb}d", name=name)
