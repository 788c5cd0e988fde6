"""The `prismq-queue` command line (CONTRACT §7).

Commands that need the api or workers packages register through the
``prismq_queue.commands`` entry point group, so queue_core never imports them.
"""

from __future__ import annotations

import logging
import sys
from importlib.metadata import entry_points
from typing import Any

import click

from queue_core.cli._common import run_guarded
from queue_core.cli.db import db_group
from queue_core.cli.maintenance import maintenance_group
from queue_core.cli.tasks import enqueue_command, stats_command, tasks_group

ENTRY_POINT_GROUP = "prismq_queue.commands"


class QueueGroup(click.Group):
    """Adds the commands other packages register, when they are installed."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(_plugin_names()))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        for entry in entry_points(group=ENTRY_POINT_GROUP):
            if entry.name == cmd_name:
                try:
                    loaded: Any = entry.load()
                except ImportError as exc:
                    return _unavailable(cmd_name, exc)
                return loaded if isinstance(loaded, click.Command) else None
        return None


def _unavailable(name: str, error: ImportError) -> click.Command:
    def explain() -> None:
        raise click.ClickException(f"the {name} command is unavailable: {error}")

    return click.Command(name, callback=explain, help=f"(unavailable: {error})")


def _plugin_names() -> list[str]:
    return [entry.name for entry in entry_points(group=ENTRY_POINT_GROUP)]


@click.group(cls=QueueGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="prismq-queue")
def cli() -> None:
    """prismq-queue: a persistent task queue on SQLite or PostgreSQL."""


cli.add_command(db_group)
cli.add_command(enqueue_command)
cli.add_command(tasks_group)
cli.add_command(stats_command)
cli.add_command(maintenance_group)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    code = run_guarded(cli, argv)
    if argv is None:
        sys.exit(code)
    return code


if __name__ == "__main__":  # pragma: no cover
    main()
