"""`prismq-queue schedules ...` and `prismq-queue types ...` (CONTRACT §7, §9)."""

from __future__ import annotations

from typing import Any

import click

from queue_core.cli.options import database_option, echo_json, open_db, parse_json_object
from queue_core.errors import QueueError
from queue_core.repositories import ScheduleRepository, TypeRepository
from queue_core.repositories.types import parse_rate
from queue_core.schemas import Schedule, ScheduleCreate, TaskTypeInfo
from queue_core.settings import SCHEDULE_CATCH_UP_DEFAULT, SCHEDULE_TIMEZONE_DEFAULT


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    )


# --- schedules ---


@click.group("schedules")
def schedules_group() -> None:
    """Periodic tasks: one task of a type at each time a cron expression names."""


def _schedule_rows(schedules: list[Schedule]) -> str:
    return _table(
        ("NAME", "TYPE", "CRON", "TIMEZONE", "CATCH-UP", "STATE", "NEXT DUE (UTC)"),
        [
            (
                s.name,
                s.type,
                s.cron,
                s.timezone,
                s.catch_up,
                "paused" if s.paused else "active",
                s.next_due_utc.strftime("%Y-%m-%d %H:%M:%S"),
            )
            for s in schedules
        ],
    )


@schedules_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of schedule objects.")
@database_option
def schedules_list(as_json: bool, database_url: str | None) -> None:
    """List the schedules."""
    with open_db(database_url) as db:
        schedules = ScheduleRepository(db).list()
    if as_json:
        echo_json(schedules)
    elif schedules:
        click.echo(_schedule_rows(schedules))
    else:
        click.echo("no schedules")


@schedules_group.command("add")
@click.argument("name")
@click.argument("task_type", metavar="TYPE")
@click.argument("cron", metavar="CRON")
@click.option(
    "--timezone", default=SCHEDULE_TIMEZONE_DEFAULT, show_default=True, help="IANA time zone."
)
@click.option("--payload", default=None, help="JSON object handed to each task.")
@click.option("--priority", type=int, default=None, help="1-1000, lower runs first (100).")
@click.option(
    "--catch-up",
    type=click.Choice(["latest", "none", "all"]),
    default=SCHEDULE_CATCH_UP_DEFAULT,
    show_default=True,
    help="Due times missed while no worker ran: the latest once, none, or all (at most 100).",
)
@database_option
def schedules_add(
    name: str,
    task_type: str,
    cron: str,
    timezone: str,
    payload: str | None,
    priority: int | None,
    catch_up: str,
    database_url: str | None,
) -> None:
    """Add schedule NAME: a task of TYPE at each time CRON (five fields) names."""
    fields: dict[str, Any] = {
        "name": name,
        "type": task_type,
        "cron": cron,
        "timezone": timezone,
        "payload": parse_json_object(payload, "--payload"),
        "catch_up": catch_up,
    }
    if priority is not None:
        fields["priority"] = priority
    spec = ScheduleCreate.model_validate(fields)
    with open_db(database_url) as db:
        echo_json(ScheduleRepository(db).add(spec))


@schedules_group.command("remove")
@click.argument("name")
@database_option
def schedules_remove(name: str, database_url: str | None) -> None:
    """Remove a schedule (the tasks it enqueued stay)."""
    with open_db(database_url) as db:
        ScheduleRepository(db).remove(name)
    click.echo(f"removed schedule {name}")


@schedules_group.command("pause")
@click.argument("name")
@database_option
def schedules_pause(name: str, database_url: str | None) -> None:
    """Stop enqueueing a schedule's tasks until it is resumed."""
    with open_db(database_url) as db:
        echo_json(ScheduleRepository(db).pause(name))


@schedules_group.command("resume")
@click.argument("name")
@database_option
def schedules_resume(name: str, database_url: str | None) -> None:
    """Resume a paused schedule at its next due time."""
    with open_db(database_url) as db:
        echo_json(ScheduleRepository(db).resume(name))


@schedules_group.command("run")
@click.argument("name")
@database_option
def schedules_run(name: str, database_url: str | None) -> None:
    """Enqueue one task of the schedule now and print it."""
    with open_db(database_url) as db:
        echo_json(ScheduleRepository(db).run(name))


# --- types ---


@click.group("types")
def types_group() -> None:
    """Flow control per task type: pause, resume, limits."""


def _rate(info: TaskTypeInfo) -> str:
    return "-" if info.rate is None else f"{info.rate.count}/{info.rate.per_seconds:g}s"


@types_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of type objects.")
@database_option
def types_list(as_json: bool, database_url: str | None) -> None:
    """List task types with their pause state, limits and load."""
    with open_db(database_url) as db:
        types = TypeRepository(db).list()
    if as_json:
        echo_json(types)
        return
    if not types:
        click.echo("no task types")
        return
    click.echo(
        _table(
            ("TYPE", "STATE", "MAX RUNNING", "RATE", "QUEUED", "LEASED"),
            [
                (
                    t.type,
                    "paused" if t.paused else "active",
                    "-" if t.max_running is None else str(t.max_running),
                    _rate(t),
                    str(t.queued),
                    str(t.leased),
                )
                for t in types
            ],
        )
    )


@types_group.command("pause")
@click.argument("task_type", metavar="TYPE")
@database_option
def types_pause(task_type: str, database_url: str | None) -> None:
    """No worker claims tasks of TYPE until it is resumed (running ones finish)."""
    with open_db(database_url) as db:
        echo_json(TypeRepository(db).pause(task_type))


@types_group.command("resume")
@click.argument("task_type", metavar="TYPE")
@database_option
def types_resume(task_type: str, database_url: str | None) -> None:
    """Let workers claim tasks of TYPE again."""
    with open_db(database_url) as db:
        echo_json(TypeRepository(db).resume(task_type))


@types_group.command("limit")
@click.argument("task_type", metavar="TYPE")
@click.option(
    "--max-running",
    type=click.IntRange(min=1),
    default=None,
    help="At most N tasks of TYPE leased at once, over every worker and host.",
)
@click.option(
    "--rate", default=None, metavar="N/SECONDS", help="At most N claims in any SECONDS window."
)
@click.option("--clear", is_flag=True, help="Remove both limits.")
@database_option
def types_limit(
    task_type: str,
    max_running: int | None,
    rate: str | None,
    clear: bool,
    database_url: str | None,
) -> None:
    """Set (or --clear) the global limits of TYPE; an option left out stays as it is."""
    if clear and (max_running is not None or rate is not None):
        raise click.UsageError("--clear removes both limits: give it alone")
    if not clear and max_running is None and rate is None:
        raise click.UsageError("give --max-running, --rate or --clear")
    parsed = None
    if rate is not None:
        try:
            parsed = parse_rate(rate)
        except QueueError as exc:
            raise click.BadParameter(str(exc), param_hint="--rate") from exc
    with open_db(database_url) as db:
        repository = TypeRepository(db)
        if clear:
            echo_json(repository.clear_limits(task_type))
            return
        fields: dict[str, Any] = {}
        if max_running is not None:
            fields["max_running"] = max_running
        if parsed is not None:
            fields["rate"] = parsed
        echo_json(repository.set_limits(task_type, **fields))
