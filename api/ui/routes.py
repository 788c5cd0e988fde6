"""The dashboard's pages and actions, served under /ui (CONTRACT §10, docs/dashboard.md).

Pages are rendered on the server with Jinja2 (autoescaping every value: payloads, error
messages and type names are whatever producers and handlers wrote). Actions are plain HTML
forms that POST, then redirect (303) back to a page; they call the same repository methods as
the REST API and record ``actor: "dashboard"`` in the task's log.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.params import Path as PathParam
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader

from api.ui import charts
from api.ui.session import (
    CSRF_COOKIE,
    CSRF_DETAIL,
    CSRF_FIELD,
    LOGIN_PATH,
    SESSION_COOKIE,
    UI_PREFIX,
    CsrfRefused,
    NotSignedIn,
    UiAuth,
    UiUser,
    not_signed_in_response,
    safe_next,
    set_cookie,
)
from queue_core.clock import utcnow
from queue_core.errors import InvalidTransition, TaskNotFound
from queue_core.repositories import DashboardRepository, TaskRepository, WorkerRepository
from queue_core.schemas import Task
from queue_core.settings import (
    TYPE_MAX_LENGTH,
    TYPE_PATTERN,
    UI_CHART_MINUTES,
    UI_FINISHED_COUNTS_SECONDS,
    UI_PAGE_SIZE,
    UI_REFRESH_SECONDS,
)
from queue_core.states import RETRYABLE_STATES, TERMINAL_STATES, TaskStatus

ACTOR = "dashboard"
ID_MAX = 2**63 - 1
TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
STATIC_DIR = Path(__file__).resolve().parent / "static"
STATUSES = [status.value for status in TaskStatus]
_TYPE_RE = re.compile(TYPE_PATTERN)

# What an action's redirect may announce on the page it lands on (never free text).
NOTICES = {
    "cancelled": "Task {task} cancelled.",
    "cancel-requested": "Cancellation of task {task} requested: its worker stops it.",
    "retried": "Task {task} re-queued.",
}

# Every page forbids framing (clickjacking the action buttons) and any script, style or
# connection that is not served by this server, which also disarms injected markup.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
        "object-src 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _age(value: datetime | float | None, now: datetime | None = None) -> str:
    """'42 s', '5 min', '3 h 10 min', '2 d 4 h' for a past instant or a number of seconds."""
    if value is None:
        return "-"
    seconds = (
        (now or utcnow()) - value if isinstance(value, datetime) else timedelta(seconds=value)
    ).total_seconds()
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 120:
        return f"{minutes} min"
    hours = minutes // 60
    if hours < 48:
        return f"{hours} h {minutes % 60} min"
    return f"{hours // 24} d {hours % 24} h"


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


def _pretty(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode()


def _short(value: str | None, limit: int = 120) -> str:
    if not value:
        return ""
    line = value.strip().splitlines()[0] if value.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def make_environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,  # every template, whatever its name
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(age=_age, when=_when, pretty=_pretty, short=_short)
    env.globals.update(
        UI=UI_PREFIX,
        CSRF_FIELD=CSRF_FIELD,
        STATUSES=STATUSES,
        REFRESH=UI_REFRESH_SECONDS,
        FINISHED_MAX_AGE=UI_FINISHED_COUNTS_SECONDS,
    )
    return env


TEMPLATES = make_environment()


def _auth(request: Request) -> UiAuth:
    auth: UiAuth = request.app.state.ui_auth
    return auth


def signed_in_user(request: Request) -> UiUser:
    """Every protected page and action depends on this: no session, no dashboard."""
    auth = _auth(request)
    if not auth.signed_in(request):
        raise NotSignedIn
    return auth.user(request)


async def csrf_checked(request: Request) -> dict[str, list[str]]:
    return await _auth(request).check_csrf(request)


User = Annotated[UiUser, Depends(signed_in_user)]
Form = Annotated[dict[str, list[str]], Depends(csrf_checked)]
TaskId = Annotated[int, PathParam(ge=1, le=ID_MAX)]


def render(
    request: Request, user: UiUser, template: str, status_code: int = 200, **context: Any
) -> HTMLResponse:
    html = TEMPLATES.get_template(template).render(
        user=user, path=request.url.path, now=utcnow(), **context
    )
    response = HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)
    if user.new_csrf_cookie is not None:
        set_cookie(response, CSRF_COOKIE, user.new_csrf_cookie, None, request.url.scheme == "https")
    return response


def _repos(request: Request) -> tuple[TaskRepository, WorkerRepository, DashboardRepository]:
    state = request.app.state
    return state.tasks, state.workers, state.dashboard


def _notice(done: str | None, task: int | None) -> str | None:
    template = NOTICES.get(done or "")
    return template.format(task=task) if template and task else None


router = APIRouter(prefix=UI_PREFIX, include_in_schema=False)


# --- sign-in ---


@router.get("/login")
def login_page(request: Request, next: str | None = None) -> Response:
    auth = _auth(request)
    if not auth.keyed or auth.signed_in(request):
        return RedirectResponse(safe_next(next), status_code=303)
    return render(request, auth.user(request), "login.html", next=safe_next(next), error=None)


@router.post("/login")
def login(request: Request, form: Form) -> Response:
    auth = _auth(request)
    target = safe_next(next(iter(form.get("next", [])), None))
    if not auth.keyed:
        return RedirectResponse(target, status_code=303)
    signed = auth.sign_in(next(iter(form.get("key", [])), ""))
    if signed is None:
        return render(
            request,
            auth.user(request),
            "login.html",
            status_code=401,
            next=target,
            error="That key is not valid.",
        )
    value, max_age = signed
    response = RedirectResponse(target, status_code=303)
    set_cookie(response, SESSION_COOKIE, value, max_age, request.url.scheme == "https")
    return response


@router.get("/logout")
def logout_page(request: Request, user: User) -> Response:
    return render(request, user, "logout.html")


@router.post("/logout")
def logout(request: Request, form: Form) -> Response:
    _auth(request).sign_out(request)
    response = RedirectResponse(LOGIN_PATH, status_code=303)
    response.delete_cookie(SESSION_COOKIE, path=UI_PREFIX, httponly=True, samesite="strict")
    return response


# --- pages ---


@router.get("")
def overview(request: Request, user: User) -> Response:
    _, workers, dashboard = _repos(request)
    worker_list = workers.list()
    active = sum(1 for w in worker_list if w.status == "active")
    stats = request.app.state.ui_counts.stats(active)
    now = dashboard.clock()
    throughput = dashboard.throughput(UI_CHART_MINUTES)
    samples = dashboard.depth(UI_CHART_MINUTES)
    depth_chart = charts.line_chart(
        [s.sampled_at_utc for s in samples],
        {"queued": [s.queued for s in samples], "leased": [s.leased for s in samples]},
        now - timedelta(minutes=UI_CHART_MINUTES),
        now,
    )
    throughput_chart = charts.bar_chart(
        [m.start_utc for m in throughput], [m.count for m in throughput]
    )
    return render(
        request,
        user,
        "overview.html",
        stats=stats,
        types=sorted(stats.by_type.items()),
        active=active,
        stale=len(worker_list) - active,
        depth=depth_chart,
        throughput=throughput_chart,
        finished_last_hour=sum(m.count for m in throughput),
        last_sample=samples[-1] if samples else None,
    )


def _task_list(
    request: Request,
    user: User,
    *,
    template: str,
    status: str | None,
    type: str | None,
    before_id: int | None,
    notice: str | None = None,
) -> Response:
    tasks, _, _ = _repos(request)
    problems = []
    if status and status not in STATUSES:
        problems.append("Unknown status.")
    if type and (len(type) > TYPE_MAX_LENGTH or not _TYPE_RE.match(type)):
        problems.append("That is not a valid task type name.")
    rows: list[Task] = []
    if not problems:
        rows = tasks.list(
            status=status or None, type=type or None, limit=UI_PAGE_SIZE, before_id=before_id
        )
    filters = {"status": status or "", "type": type or ""} if template == "tasks.html" else {}
    filters = {key: value for key, value in filters.items() if value}
    base = request.url.path
    older = rows[-1].task_id if len(rows) == UI_PAGE_SIZE else None
    return render(
        request,
        user,
        template,
        status_code=422 if problems else 200,
        tasks=rows,
        status=status or "",
        type=type or "",
        newest_url=f"{base}?{urlencode(filters)}" if before_id else None,
        older_url=f"{base}?{urlencode({**filters, 'before_id': older})}" if older else None,
        problems=problems,
        notice=notice,
        retryable={s.value for s in RETRYABLE_STATES},
    )


@router.get("/tasks")
def task_list(
    request: Request,
    user: User,
    status: str | None = None,
    type: str | None = None,
    before_id: Annotated[int | None, Query(ge=1, le=ID_MAX)] = None,
) -> Response:
    return _task_list(
        request, user, template="tasks.html", status=status, type=type, before_id=before_id
    )


@router.get("/dead")
def dead_letters(
    request: Request,
    user: User,
    type: str | None = None,
    before_id: int | None = None,
    done: str | None = None,
    task: int | None = None,
) -> Response:
    return _task_list(
        request,
        user,
        template="dead.html",
        status=TaskStatus.FAILED.value,
        type=type,
        before_id=before_id if before_id and 1 <= before_id <= ID_MAX else None,
        notice=_notice(done, task),
    )


@router.get("/tasks/{task_id}")
def task_detail(request: Request, user: User, task_id: TaskId, done: str | None = None) -> Response:
    tasks, _, _ = _repos(request)
    try:
        task = tasks.get(task_id)
        logs = tasks.logs(task_id)
    except TaskNotFound:
        return render(request, user, "missing.html", status_code=404, task_id=task_id)
    return render(
        request,
        user,
        "task.html",
        task=task,
        logs=logs,
        depends_on=task.depends_on,
        can_cancel=task.status not in TERMINAL_STATES and not task.cancel_requested,
        can_retry=task.status in RETRYABLE_STATES,
        notice=_notice(done, task_id),
    )


@router.get("/workers")
def workers_page(request: Request, user: User) -> Response:
    _, workers, dashboard = _repos(request)
    running: dict[str | None, list[Any]] = {}
    for item in dashboard.running_tasks():
        running.setdefault(item.worker_id, []).append(item)
    listed = workers.list()
    known = {worker.worker_id for worker in listed}
    orphans = sorted(
        ((worker_id, items) for worker_id, items in running.items() if worker_id not in known),
        key=lambda pair: pair[0] or "",
    )
    return render(request, user, "workers.html", workers=listed, running=running, orphans=orphans)


# --- actions ---


def _back(form: dict[str, list[str]], default: str) -> str:
    target = safe_next(next(iter(form.get("next", [])), None))
    return target if target != UI_PREFIX else default


def _action_failed(request: Request, user: UiUser, error: Exception) -> Response:
    status = 404 if isinstance(error, TaskNotFound) else 409
    return render(request, user, "error.html", status_code=status, message=str(error))


@router.post("/tasks/{task_id}/cancel")
def cancel(request: Request, user: User, form: Form, task_id: TaskId) -> Response:
    tasks, _, _ = _repos(request)
    try:
        result = tasks.cancel(task_id, actor=ACTOR)
    except (TaskNotFound, InvalidTransition) as error:
        return _action_failed(request, user, error)
    request.app.state.ui_counts.invalidate()
    done = "cancelled" if result.immediate else "cancel-requested"
    return _redirect_with(_back(form, f"{UI_PREFIX}/tasks/{task_id}"), done, task_id)


@router.post("/tasks/{task_id}/retry")
def retry(request: Request, user: User, form: Form, task_id: TaskId) -> Response:
    tasks, _, _ = _repos(request)
    try:
        tasks.retry(task_id, actor=ACTOR)
    except (TaskNotFound, InvalidTransition) as error:
        return _action_failed(request, user, error)
    request.app.state.ui_counts.invalidate()
    return _redirect_with(_back(form, f"{UI_PREFIX}/tasks/{task_id}"), "retried", task_id)


def _redirect_with(target: str, done: str, task_id: int) -> Response:
    path = target.split("?", 1)[0]
    return RedirectResponse(f"{path}?done={done}&task={task_id}", status_code=303)


# --- errors ---


async def not_signed_in_handler(request: Request, exc: Exception) -> Response:
    return not_signed_in_response(request)


async def csrf_refused_handler(request: Request, exc: Exception) -> Response:
    return JSONResponse({"detail": CSRF_DETAIL}, status_code=403)


EXCEPTION_HANDLERS = {NotSignedIn: not_signed_in_handler, CsrfRefused: csrf_refused_handler}
