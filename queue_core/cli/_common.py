"""What every command shares: the --database-url option, output, and error handling."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click
from pydantic import BaseModel, ValidationError

from queue_core.database import Database
from queue_core.errors import (
    DatabaseUnavailable,
    IdempotencyConflict,
    InvalidTransition,
    QueueError,
    SchemaMissing,
    TaskNotFound,
)
from queue_core.repositories import InvalidPayload, PayloadTooLarge

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

F = TypeVar("F", bound=Callable[..., Any])

# A user's mistake is "bad usage" (2); anything the queue refused or could not do is 1.
_USAGE_ERRORS: tuple[type[Exception], ...] = (InvalidPayload, PayloadTooLarge)
_FAILURES: tuple[type[Exception], ...] = (
    TaskNotFound,
    InvalidTransition,
    IdempotencyConflict,
    SchemaMissing,
    DatabaseUnavailable,
    QueueError,
)


def database_option(func: F) -> F:
    return click.option(
        "--database-url",
        "database_url",
        envvar=None,
        default=None,
        metavar="URL",
        help="SQLAlchemy URL; overrides PRISMQ_QUEUE_DATABASE_URL and PRISMQ_QUEUE_DB_PATH.",
    )(func)


def open_db(database_url: str | None) -> Database:
    return Database(database_url)


def echo_json(value: Any) -> None:
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    elif isinstance(value, list):
        value = [v.model_dump(mode="json") if isinstance(v, BaseModel) else v for v in value]
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def parse_json_object(value: str | None, name: str) -> dict[str, Any]:
    if value is None:
        return {}
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON ({exc.msg})", param_hint=name) from exc
    if not isinstance(parsed, dict):
        raise click.BadParameter("must be a JSON object", param_hint=name)
    return parsed


def _one_line(error: BaseException) -> str:
    if isinstance(error, ValidationError):
        parts = []
        for item in error.errors():
            where = ".".join(str(p) for p in item["loc"]) or "input"
            parts.append(f"{where}: {item['msg']}")
        return "invalid task: " + "; ".join(parts)
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def run_guarded(command: click.Command, argv: list[str] | None) -> int:
    """Run a click command; turn every expected error into one line on stderr."""
    try:
        command.main(args=argv, prog_name="prismq-queue", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.Abort:
        click.echo("error: aborted", err=True)
        return EXIT_FAILURE
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        return exc.exit_code
    except ValidationError as exc:
        click.echo(f"error: {_one_line(exc)}", err=True)
        return EXIT_USAGE
    except _USAGE_ERRORS as exc:
        click.echo(f"error: {_one_line(exc)}", err=True)
        return EXIT_USAGE
    except _FAILURES as exc:
        click.echo(f"error: {_one_line(exc)}", err=True)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        click.echo(f"error: {_one_line(exc)}", err=True)
        return EXIT_FAILURE
    return EXIT_OK


def fail(message: str, code: int = EXIT_FAILURE) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)
