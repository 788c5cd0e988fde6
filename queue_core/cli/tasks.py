"""`prismq-queue enqueue`, `tasks show|list|logs|wait|cancel|retry` and `stats`."""

from __future__ import annotations

import json
import math
import sys
from datetime import datetime, timedelta

import click

from queue_core.cli.options import (
    EXIT_FAILURE,
    GreedyOption,
    database_option,
    echo_json,
    open_db,
    parse_ids,
    parse_json_object,
)
from queue_core.clock import utcnow
from queue_core.errors import TaskWaitTimeout
from queue_core.repositories import TaskRepository
from queue_core.schemas import Task, TaskCreate
from queue_core.settings import LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX, WAIT_CLI_MAX_SECONDS
from queue_core.states import TaskStatus


@click.command("enqueue")
@click.argument("task_type", metavar="TYPE")
@click.option(
    "--payload",
    default=None,
    metavar="JSON|@FILE|-",
    help="JSON object handed to the handler; @FILE reads it from a file, - from stdin.",
)
@click.option("--priority", type=int, default=None, help="1-1000, lower runs first (100).")
@click.option("--compatibility", default=None, help="JSON object of worker requirements.")
@click.option("--max-attempts", type=int, default=None, help="Attempts before failing (5).")
@click.option("--idempotency-key", default=None, help="Enqueue at most once per key.")
@click.option(
    "--delay", type=float, default=None, metavar="SECONDS", help="Seconds before the task is due."
)
@click.option(
    "--timeout-seconds",
    type=float,
    default=None,
    help="The handler's time limit for this task; past it the attempt fails as a timeout.",
)
@click.option(
    "--depends-on",
    "depends_on",
    cls=GreedyOption,
    multiple=True,
    metavar="ID …",
    help="Run only once these tasks completed (ids, repeatable: --depends-on 3 4).",
)
@database_option
def enqueue_command(
    task_type: str,
    payload: str | None,
    priority: int | None,
    compatibility: str | None,
    max_attempts: int | None,
    idempotency_key: str | None,
    delay: float | None,
    timeout_seconds: float | None,
    depends_on: tuple[str, ...],
    database_url: str | None,
) -> None:
    """Enqueue one task and print it as JSON."""
    fields: dict[str, object] = {
        "type": task_type,
        "payload": parse_json_object(payload, "--payload"),
        "compatibility": parse_json_object(compatibility, "--compatibility"),
    }
    if priority is not None:
        fields["priority"] = priority
    if max_attempts is not None:
        fields["max_attempts"] = max_attempts
    if idempotency_key is not None:
        fields["idempotency_key"] = idempotency_key
    if delay is not None:
        fields["run_after_utc"] = _due_after(delay)
    if timeout_seconds is not None:
        fields["timeout_seconds"] = timeout_seconds
    if depends_on:
        fields["depends_on"] = parse_ids(depends_on, "--depends-on")
    spec = TaskCreate.model_validate(fields)
    with open_db(database_url, create=True) as db:
        echo_json(TaskRepository(db).enqueue(spec).task)


def _due_after(delay: float) -> datetime:
    """now + delay; a delay that is negative, not finite or past the year 9999 is bad usage."""
    if not math.isfinite(delay):
        raise click.BadParameter(
            f"must be a finite number of seconds, not {delay}", param_hint="--delay"
        )
    if delay < 0:
        raise click.BadParameter("must not be negative", param_hint="--delay")
    try:
        return utcnow() + timedelta(seconds=delay)
    except OverflowError:
        raise click.BadParameter(
            f"{delay:g} seconds is too far ahead", param_hint="--delay"
        ) from None


@click.group("tasks")
def tasks_group() -> None:
    """Inspect and act on tasks."""


@tasks_group.command("show")
@click.argument("task_id", type=int)
@database_option
def show(task_id: int, database_url: str | None) -> None:
    """Print one task as JSON."""
    with open_db(database_url) as db:
        echo_json(TaskRepository(db).get(task_id))


@tasks_group.command("list")
@click.option("--status", type=click.Choice([s.value for s in TaskStatus]), default=None)
@click.option("--type", "task_type", default=None)
@click.option(
    "--limit", type=click.IntRange(1, LIST_LIMIT_MAX), default=LIST_LIMIT_DEFAULT, show_default=True
)
@click.option(
    "--before-id",
    type=click.IntRange(min=1),
    default=None,
    metavar="ID",
    help="Only tasks with a smaller id: the last ID of a page gives the next page.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of task objects.")
@database_option
def list_tasks(
    status: str | None,
    task_type: str | None,
    limit: int,
    before_id: int | None,
    as_json: bool,
    database_url: str | None,
) -> None:
    """List tasks, newest first."""
    with open_db(database_url) as db:
        tasks = TaskRepository(db).list(
            status=status, type=task_type, limit=limit, before_id=before_id
        )
    if as_json:
        echo_json(tasks)
        return
    click.echo(_table(tasks))


def _table(tasks: list[Task]) -> str:
    header = ("ID", "TYPE", "STATUS", "PRI", "ATTEMPTS", "CREATED (UTC)", "ERROR")
    rows = [
        (
            str(t.task_id),
            t.type,
            t.status.value,
            str(t.priority),
            f"{t.attempts}/{t.max_attempts}",
            t.created_at_utc.strftime("%Y-%m-%d %H:%M:%S"),
            (t.error_message or "")[:40],
        )
        for t in tasks
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    return "\n".join(lines)


@tasks_group.command("logs")
@click.argument("task_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of log objects.")
@database_option
def logs(task_id: int, as_json: bool, database_url: str | None) -> None:
    """Print a task's history (task_logs), oldest first."""
    with open_db(database_url) as db:
        entries = TaskRepository(db).logs(task_id)
    if as_json:
        echo_json(entries)
        return
    for entry in entries:
        details = "" if not entry.details else " " + json.dumps(entry.details, ensure_ascii=False)
        click.echo(
            f"{entry.at_utc.strftime('%Y-%m-%d %H:%M:%S.%f')[:-3]}  {entry.level:<7}  "
            f"{entry.message}{details}"
        )


@tasks_group.command("wait")
@click.argument("task_id", type=int)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, max=WAIT_CLI_MAX_SECONDS),
    default=None,
    metavar="S",
    help="Give up after S seconds (exit 1). Default: wait as long as it takes.",
)
@database_option
def wait(task_id: int, timeout: float | None, database_url: str | None) -> None:
    """Block until the task is completed, failed or cancelled, and print it.

    Exit 0 when it completed; 1 when it failed, was cancelled, or the timeout passed (the task
    is printed as it was then, with one line on stderr).
    """
    with open_db(database_url) as db:
        try:
            task = TaskRepository(db).wait(task_id, timeout)
        except TaskWaitTimeout as exc:
            echo_json(exc.task)
            raise click.ClickException(str(exc)) from None
    echo_json(task)
    if task.status is not TaskStatus.COMPLETED:
        sys.exit(EXIT_FAILURE)  # (click.exceptions.Exit is swallowed outside standalone mode)


@tasks_group.command("cancel")
@click.argument("task_id", type=int)
@database_option
def cancel(task_id: int, database_url: str | None) -> None:
    """Cancel a queued task, or ask the worker of a running one to stop."""
    with open_db(database_url) as db:
        echo_json(TaskRepository(db).cancel(task_id).task)


@tasks_group.command("retry")
@click.argument("task_id", type=int)
@database_option
def retry(task_id: int, database_url: str | None) -> None:
    """Re-queue a failed or cancelled task."""
    with open_db(database_url) as db:
        echo_json(TaskRepository(db).retry(task_id))


@click.command("stats")
@click.option("--json", "as_json", is_flag=True, help="Print the REST stats object.")
@database_option
def stats_command(as_json: bool, database_url: str | None) -> None:
    """Queue statistics."""
    with open_db(database_url) as db:
        stats = TaskRepository(db).stats()
    if as_json:
        echo_json(stats)
        return
    age = stats.oldest_queued_age_seconds
    click.echo(
        "\n".join(
            [
                f"total      {stats.total_tasks}",
                f"queued     {stats.queued_tasks}",
                f"leased     {stats.leased_tasks}",
                f"completed  {stats.completed_tasks}",
                f"failed     {stats.failed_tasks}",
                f"cancelled  {stats.cancelled_tasks}",
                f"oldest queued age  {'-' if age is None else f'{age:.1f}s'}",
                f"active workers     {stats.workers_active}",
            ]
        )
    )
    for task_type, counts in sorted(stats.by_type.items()):
        summary = ", ".join(f"{status} {n}" for status, n in sorted(counts.items()))
        click.echo(f"  {task_type}: {summary}")
