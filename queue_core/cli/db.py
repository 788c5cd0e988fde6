"""`prismq-queue db upgrade|downgrade|current|copy`: Alembic migrations, moving a queue."""

from __future__ import annotations

import click

from queue_core.cli.options import database_option, open_db
from queue_core.database import Database
from queue_core.settings import COPY_BATCH_SIZE

# queue_core.migrate (Alembic) is imported inside the commands: importing Alembic costs a
# fifth of the start-up time of every other prismq-queue command.


@click.group("db")
def db_group() -> None:
    """Database migrations (Alembic)."""


@db_group.command("upgrade")
@click.argument("revision", default="head")
@click.option("--sql", is_flag=True, help="Print the SQL instead of running it (for DBAs).")
@database_option
def upgrade(revision: str, sql: bool, database_url: str | None) -> None:
    """Migrate the database up to REVISION (default: head)."""
    from queue_core import migrate

    db = open_db(database_url, create=True)
    try:
        if sql:
            click.echo(migrate.upgrade_sql(db.url, revision))
            return
        migrate.upgrade(db, revision)
        click.echo(f"database at {db.safe_url} is at revision {migrate.current_revision(db)}")
    finally:
        db.dispose()


@db_group.command("downgrade")
@click.argument("revision")
@database_option
def downgrade(revision: str, database_url: str | None) -> None:
    """Migrate the database down to REVISION (`base` removes the schema)."""
    from queue_core import migrate

    db = open_db(database_url)
    try:
        migrate.downgrade(db, revision)
        click.echo(f"database at {db.safe_url} is at revision {migrate.current_revision(db)}")
    finally:
        db.dispose()


@db_group.command("current")
@database_option
def current(database_url: str | None) -> None:
    """Print the database's revision and the newest one available."""
    from queue_core import migrate

    db = open_db(database_url)
    try:
        revision = migrate.current_revision(db)
        head = migrate.head_revision()
        state = "up to date" if revision == head else f"head is {head}"
        click.echo(f"{revision or 'none'} ({state})")
    finally:
        db.dispose()


@db_group.command("copy")
@click.option(
    "--to", "to_url", required=True, metavar="URL", help="The target database (migrated first)."
)
@click.option(
    "--force", is_flag=True, help="Copy even while workers are active on the source or target."
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=COPY_BATCH_SIZE,
    show_default=True,
    help="Rows per read and per target transaction.",
)
@database_option
def copy(to_url: str, force: bool, batch_size: int, database_url: str | None) -> None:
    """Copy the whole queue (every table, with its ids) into the database at --to.

    Runs between SQLite and PostgreSQL in either direction. Interrupted, it resumes where it
    stopped when run again. At the end it compares the row counts of every table and a
    checksum of every task.
    """
    from queue_core.dbcopy import copy_queue

    source = _open_for_copy(database_url, "--database-url")
    target = _open_for_copy(to_url, "--to")
    try:
        report = copy_queue(
            source, target, force=force, batch_size=batch_size, progress=_print_progress
        )
    finally:
        source.dispose()
        target.dispose()
    for table in report.tables:
        click.echo(f"{table.name}: {table.target_rows} rows ({table.copied} copied now)")
    click.echo(
        f"verified {report.tasks_verified} tasks, checksum {report.tasks_checksum}: "
        f"{source.safe_url} -> {target.safe_url}"
    )


def _open_for_copy(url: str | None, option: str) -> Database:
    # The source must exist; the target is created (and migrated) when it does not.
    return open_db(url, create=option == "--to", option=option)


def _print_progress(table: str, done: int, total: int) -> None:
    click.echo(f"  {table}: {done}/{total}", err=True)
