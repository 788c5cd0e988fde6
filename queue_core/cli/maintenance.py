"""`prismq-queue maintenance ...`: operations on the database."""

from __future__ import annotations

import click

from queue_core.cli._common import database_option, open_db
from queue_core.repositories import sweep


@click.group("maintenance")
def maintenance_group() -> None:
    """Database maintenance: sweep, backup, checkpoint, vacuum, analyze, purge."""


@maintenance_group.command("sweep")
@database_option
def sweep_command(database_url: str | None) -> None:
    """Recover expired leases and the tasks of stale workers, once."""
    with open_db(database_url) as db:
        report = sweep(db)
    click.echo(
        f"recovered {report.total} task(s): {len(report.requeued)} requeued, "
        f"{len(report.failed)} failed, {len(report.cancelled)} cancelled"
    )
