"""The public seam for `prismq-queue` commands, here and in other packages.

A command module imports what it shares with the others from here: the ``--database-url``
option, opening the database, JSON in and out, the exit codes and :class:`LazyCommand`.

This module stays light (Click and the standard library): ``prismq-queue --help`` imports
it, and SQLAlchemy, pydantic and the models load only inside the functions that need them.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from queue_core.database import Database

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

DATABASE_URL_OPTION = "--database-url"
DATABASE_URL_ENV = "PRISMQ_QUEUE_DATABASE_URL"
_DATABASE_URL_META = "prismq_queue.database_url"
"""Where the group's ``--database-url`` (given before the command) waits for the command."""

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class LazyCommand:
    """A command known by name and short help, imported only when it runs or shows its help.

    ``target`` is ``"package.module:attribute"`` naming a :class:`click.Command`. Register
    one in ``queue_core.cli.COMMANDS``, or from another package through the
    ``prismq_queue.commands`` entry points (an entry point may name a LazyCommand or a
    click.Command).
    """

    target: str
    short_help: str

    def load(self) -> click.Command:
        module_name, _, attribute = self.target.partition(":")
        command = getattr(importlib.import_module(module_name), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{self.target} is not a click command")
        return command


def remember_database_url(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """The group's ``--database-url``: kept for the command that follows."""
    if value is not None:
        ctx.meta[_DATABASE_URL_META] = value


def _inherit_database_url(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> str | None:
    """A command's own ``--database-url`` wins; else the one given before the command."""
    if value is not None:
        return value
    inherited: str | None = ctx.meta.get(_DATABASE_URL_META)
    return inherited


def database_option(func: F) -> F:
    """``--database-url URL``, accepted after the command as well as before it (CONTRACT §7)."""
    return click.option(
        DATABASE_URL_OPTION,
        "database_url",
        envvar=None,
        default=None,
        metavar="URL",
        callback=_inherit_database_url,
        help="SQLAlchemy URL; overrides PRISMQ_QUEUE_DATABASE_URL and PRISMQ_QUEUE_DB_PATH.",
    )(func)


def database_url(override: str | None, option: str = DATABASE_URL_OPTION) -> str:
    """The URL a command uses (CONTRACT §2), checked: a bad one is bad usage (exit 2)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from queue_core.settings import resolve_database_url

    url = resolve_database_url(override)
    try:
        make_url(url)
    except ArgumentError:
        source = option if override else DATABASE_URL_ENV
        raise click.BadParameter(
            f"{url!r} is not a database URL (expected sqlite:///PATH or "
            "postgresql+psycopg://USER@HOST/NAME)",
            param_hint=source,
        ) from None
    return url


def open_db(
    override: str | None, *, create: bool = False, option: str = DATABASE_URL_OPTION
) -> Database:
    """Open the command's database.

    Only commands that write pass ``create=True`` (CONTRACT §2): the others never create a
    file or a directory, and say that there is no database.
    """
    from queue_core.database import Database
    from queue_core.errors import UnsupportedDatabase

    url = database_url(override, option)
    try:
        return Database(url, create=create)
    except UnsupportedDatabase as exc:
        source = option if override else DATABASE_URL_ENV
        raise click.BadParameter(str(exc), param_hint=source) from None


def echo_json(value: Any) -> None:
    """Print a model (or a list of them) as the REST API would answer it, indented."""
    from pydantic import BaseModel

    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    elif isinstance(value, list):
        value = [v.model_dump(mode="json") if isinstance(v, BaseModel) else v for v in value]
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def read_json_argument(value: str | None, name: str) -> str | None:
    """``@FILE`` reads the text from a file, ``-`` from standard input; else it is the text."""
    if value is None:
        return None
    if value == "-":
        return sys.stdin.read()
    if value.startswith("@"):
        path = Path(os.path.expanduser(value[1:]))
        try:
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise click.BadParameter(f"cannot read {path}: {reason}", param_hint=name) from None
    return value


def parse_json_object(value: str | None, name: str) -> dict[str, Any]:
    """A JSON object given on the command line (or ``@FILE`` / ``-``); bad usage otherwise."""
    text = read_json_argument(value, name)
    if text is None:
        return {}
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON ({exc.msg})", param_hint=name) from exc
    if not isinstance(parsed, dict):
        raise click.BadParameter("must be a JSON object", param_hint=name)
    return parsed


def fail(message: str, code: int = EXIT_FAILURE) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


class GreedyOption(click.Option):
    """A repeatable option that also takes the values after it, up to the next option:
    ``--depends-on 3 4`` is ``--depends-on 3 --depends-on 4``. Values may also be written
    ``3,4``."""

    def add_to_parser(self, parser: Any, ctx: click.Context) -> None:
        super().add_to_parser(parser, ctx)
        for name in self.opts:
            option = parser._long_opt.get(name) or parser._short_opt.get(name)
            if option is None:
                continue
            process = option.process

            def greedy(value: Any, state: Any, process: Any = process) -> None:
                process(value, state)
                while state.rargs and not str(state.rargs[0]).startswith("-"):
                    process(state.rargs.pop(0), state)

            option.process = greedy


def parse_ids(values: tuple[str, ...], name: str) -> list[int]:
    """Task ids from a GreedyOption's values."""
    ids: list[int] = []
    for value in values:
        for part in str(value).split(","):
            if not part.strip():
                continue
            try:
                task_id = int(part)
            except ValueError:
                task_id = 0
            if task_id < 1:
                raise click.BadParameter(f"{part!r} is not a task id", param_hint=name)
            ids.append(task_id)
    return ids
