"""The `prismq-queue` command line (CONTRACT §7).

Commands load lazily: ``prismq-queue --help`` imports no command module, and a command
imports only what it runs (SQLAlchemy, the models, FastAPI...). To add a command, add a
line to :data:`COMMANDS` (``name: LazyCommand("module:attribute", "short help")``).

Commands that need the api or workers packages register through the
``prismq_queue.commands`` entry point group, so queue_core never imports them. An entry
point names a :class:`~queue_core.cli.options.LazyCommand` (loaded when run) or a
:class:`click.Command`.
"""

from __future__ import annotations

import logging
import sys
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import click

from queue_core.cli._common import run_guarded
from queue_core.cli.options import DATABASE_URL_OPTION, LazyCommand, remember_database_url

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

ENTRY_POINT_GROUP = "prismq_queue.commands"

COMMANDS: dict[str, LazyCommand] = {
    "db": LazyCommand("queue_core.cli.db:db_group", "Database migrations (Alembic)."),
    "enqueue": LazyCommand(
        "queue_core.cli.tasks:enqueue_command", "Enqueue one task and print it as JSON."
    ),
    "tasks": LazyCommand("queue_core.cli.tasks:tasks_group", "Inspect and act on tasks."),
    "stats": LazyCommand("queue_core.cli.tasks:stats_command", "Queue statistics."),
    "workers": LazyCommand(
        "queue_core.cli.workers:workers_group", "The workers table: who runs, who went quiet."
    ),
    "maintenance": LazyCommand(
        "queue_core.cli.maintenance:maintenance_group",
        "Database maintenance: backup, restore, checkpoint, vacuum, analyze, purge, sweep.",
    ),
    "schedules": LazyCommand(
        "queue_core.cli.flow:schedules_group",
        "Periodic tasks: one task of a type at each time a cron expression names.",
    ),
    "types": LazyCommand(
        "queue_core.cli.flow:types_group", "Flow control per task type: pause, resume, limits."
    ),
}
"""The built-in commands: name, where the command lives, its one-line help."""


class QueueGroup(click.Group):
    """Loads a command only when it runs; adds the commands other packages register."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(COMMANDS) | set(_plugins()))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        spec = self._spec(cmd_name)
        if spec is None:
            return None
        if isinstance(spec, click.Command):
            return spec
        try:
            return spec.load()
        except ImportError as exc:
            return _unavailable(cmd_name, exc)

    def _spec(self, name: str) -> LazyCommand | click.Command | None:
        if name in COMMANDS:
            return COMMANDS[name]
        entry = _plugins().get(name)
        if entry is None:
            return None
        try:
            loaded: Any = entry.load()
        except ImportError as exc:
            return _unavailable(name, exc)
        return loaded if isinstance(loaded, (LazyCommand, click.Command)) else None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list, from the short helps: no command module is imported."""
        rows: list[tuple[str, str]] = []
        for name in self.list_commands(ctx):
            spec = super().get_command(ctx, name) or self._spec(name)
            if spec is None or (isinstance(spec, click.Command) and spec.hidden):
                continue
            rows.append((name, spec.short_help if isinstance(spec, LazyCommand) else ""))
        limit = formatter.width - 6 - max((len(name) for name, _ in rows), default=0)
        rows = [
            (name, _shorten(text, limit) if text else _help(self._spec(name), limit))
            for name, text in rows
        ]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _shorten(text: str, limit: int) -> str:
    """Click's own rule: cut at a word and end with an ellipsis."""
    if len(text) <= limit:
        return text
    return text[: max(limit - 3, 0)].rsplit(" ", 1)[0].rstrip(",;:") + "..."


def _help(spec: LazyCommand | click.Command | None, limit: int) -> str:
    return spec.get_short_help_str(limit) if isinstance(spec, click.Command) else ""


@lru_cache(maxsize=1)
def _plugins() -> dict[str, EntryPoint]:
    from importlib.metadata import entry_points

    return {entry.name: entry for entry in entry_points(group=ENTRY_POINT_GROUP)}


def _unavailable(name: str, error: ImportError) -> click.Command:
    def explain() -> None:
        raise click.ClickException(f"the {name} command is unavailable: {error}")

    return click.Command(name, callback=explain, help=f"(unavailable: {error})")


@click.group(cls=QueueGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="prismq-queue")
@click.option(
    DATABASE_URL_OPTION,
    "database_url",
    default=None,
    metavar="URL",
    expose_value=False,
    callback=remember_database_url,
    help="SQLAlchemy URL for the command that follows (it may also come after the command).",
)
def cli() -> None:
    """prismq-queue: a persistent task queue on SQLite or PostgreSQL."""


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    code = run_guarded(cli, argv)
    if argv is None:
        sys.exit(code)
    return code


if __name__ == "__main__":  # pragma: no cover
    main()
