"""`prismq-queue maintenance ...`: operations on the database (docs/operations.md)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from queue_core.cli.options import database_option, open_db
from queue_core.database import Database
from queue_core.errors import SchemaMissing
from queue_core.maintenance import (
    CheckpointMode,
    MaintenanceFailed,
    MaintenanceLeases,
    NotSupportedOnBackend,
    analyze,
    backup,
    checkpoint,
    count_purgeable,
    purge,
    restore,
    vacuum,
)
from queue_core.repositories import WorkerRepository, sweep
from queue_core.settings import BACKUP_PAGES_PER_STEP, PURGE_BATCH_SIZE


@click.group("maintenance")
def maintenance_group() -> None:
    """Database maintenance: backup, restore, checkpoint, vacuum, analyze, purge, sweep."""


class _ProgressBar:
    """A progress bar on stderr when it is a terminal; silent otherwise (scripts, cron)."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.enabled = sys.stderr.isatty()
        self._bar: Any = None

    def set_total(self, total: int) -> None:
        if self.enabled and self._bar is None and total > 0:
            self._bar = click.progressbar(length=total, label=self.label, file=sys.stderr)
            self._bar.__enter__()

    def update(self, done: int) -> None:
        if self._bar is not None:
            self._bar.update(done)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None


@contextmanager
def _progress(label: str) -> Iterator[_ProgressBar]:
    bar = _ProgressBar(label)
    try:
        yield bar
    finally:
        bar.close()


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


@maintenance_group.command("backup")
@click.argument("dest", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--overwrite", is_flag=True, help="Replace DEST when it exists.")
@click.option(
    "--pages-per-step",
    type=click.IntRange(1),
    default=BACKUP_PAGES_PER_STEP,
    show_default=True,
    help="Pages copied between two progress reports.",
)
@database_option
def backup_command(
    dest: Path, overwrite: bool, pages_per_step: int, database_url: str | None
) -> None:
    """Copy the live SQLite database to DEST (safe while workers run), then verify it.

    On PostgreSQL, explains the pg_dump procedure and exits 1.
    """
    with open_db(database_url) as db, _progress("backing up") as bar:
        report = backup(
            db,
            dest,
            overwrite=overwrite,
            pages_per_step=pages_per_step,
            progress=bar.update,
            on_total=bar.set_total,
        )
    click.echo(report.summary())


@maintenance_group.command("restore")
@click.argument("source", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--force", is_flag=True, help="Restore even though workers look active.")
@database_option
def restore_command(source: Path, force: bool, database_url: str | None) -> None:
    """Replace the SQLite database's content with the backup SOURCE.

    Stop every worker and API process first. The backup is checked before, and the database
    after, with integrity_check.
    """
    with open_db(database_url, create=True) as db:
        if not force:
            _refuse_while_workers_active(db)
        report = restore(db, source)
    click.echo(report.summary())


def _refuse_while_workers_active(db: Database) -> None:
    if db.dialect.database_file(db.engine) is None:
        return  # restore() explains the PostgreSQL procedure
    try:
        active = [w.worker_id for w in WorkerRepository(db).list() if w.status == "active"]
    except SchemaMissing:
        return  # restoring into an empty file
    if active:
        raise MaintenanceFailed(
            f"{len(active)} worker(s) still send heartbeats ({', '.join(active[:3])}); "
            "stop them first, or pass --force"
        )


@maintenance_group.command("checkpoint")
@click.option(
    "--mode",
    type=click.Choice([mode.value for mode in CheckpointMode]),
    default=CheckpointMode.PASSIVE.value,
    show_default=True,
    help="passive never waits; full/restart/truncate wait for readers and writers; "
    "truncate also shrinks the WAL file to zero bytes.",
)
@database_option
def checkpoint_command(mode: str, database_url: str | None) -> None:
    """Copy the SQLite WAL back into the database file; report busy/log/checkpointed frames."""
    with open_db(database_url) as db:
        try:
            report = checkpoint(db, CheckpointMode(mode))
        except NotSupportedOnBackend as exc:
            click.echo(str(exc))
            return
    click.echo(report.summary())
    if report.busy:
        click.echo(
            "the checkpoint could not finish: a reader or writer was in the way; run it again "
            "(see docs/troubleshooting.md, 'The WAL file keeps growing')",
            err=True,
        )


@maintenance_group.command("vacuum")
@database_option
def vacuum_command(database_url: str | None) -> None:
    """Give the space of deleted rows back (SQLite rewrites the file; writers wait meanwhile)."""
    with open_db(database_url) as db:
        click.echo(vacuum(db).summary())


@maintenance_group.command("analyze")
@database_option
def analyze_command(database_url: str | None) -> None:
    """Refresh planner statistics (SQLite: ANALYZE and PRAGMA optimize)."""
    with open_db(database_url) as db:
        click.echo(analyze(db))


@maintenance_group.command("purge")
@click.option(
    "--older-than",
    "older_than",
    type=click.FloatRange(min=0),
    default=None,
    metavar="DAYS",
    help="Delete completed and cancelled tasks finished more than DAYS ago (required).",
)
@click.option(
    "--logs-older-than",
    "logs_older_than",
    type=click.FloatRange(min=0),
    default=None,
    metavar="DAYS",
    help="Also delete task_logs rows older than DAYS, whatever their task's state.",
)
@click.option("--include-failed", is_flag=True, help="Also delete failed tasks (the dead letter).")
@click.option(
    "--batch-size",
    type=click.IntRange(1),
    default=PURGE_BATCH_SIZE,
    show_default=True,
    help="Rows per write transaction.",
)
@click.option("--dry-run", is_flag=True, help="Only count what would be deleted.")
@database_option
def purge_command(
    older_than: float | None,
    logs_older_than: float | None,
    include_failed: bool,
    batch_size: int,
    dry_run: bool,
    database_url: str | None,
) -> None:
    """Delete old finished tasks (with their logs) in short batches; never queued or leased."""
    if older_than is None:
        # Deleting is never a default (issue 12 item 19): the age is always the caller's.
        raise click.UsageError(
            "--older-than DAYS is required: purge deletes the completed and cancelled tasks "
            "finished more than DAYS ago (add --dry-run to count them first)"
        )
    with open_db(database_url) as db:
        counts = count_purgeable(
            db,
            older_than,
            logs_older_than_days=logs_older_than,
            include_failed=include_failed,
        )
        if dry_run:
            click.echo(
                f"purge would delete {counts.tasks} task(s) and {counts.old_logs} "
                "old log row(s), plus the log rows of those tasks"
            )
            return
        with _progress("purging") as bar:
            bar.set_total(counts.total)
            report = purge(
                db,
                older_than,
                logs_older_than_days=logs_older_than,
                include_failed=include_failed,
                batch_size=batch_size,
                progress=bar.update,
            )
    click.echo(report.summary())


@maintenance_group.command("status")
@database_option
def status_command(database_url: str | None) -> None:
    """Database size, WAL size (SQLite) and who holds each scheduled maintenance job."""
    with open_db(database_url) as db:
        for line in db.dialect.storage_lines(db.engine):
            click.echo(line)
        leases = MaintenanceLeases(db).list()
    if not leases:
        click.echo("no scheduled maintenance has run yet")
    for lease in leases:
        click.echo(
            f"{lease.name:<11} last taken by {lease.holder}; "
            f"next due {lease.lease_until_utc.isoformat()}"
        )
