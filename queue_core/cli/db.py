"""`prismq-queue db upgrade|downgrade|current`: Alembic migrations."""

from __future__ import annotations

import click

from queue_core.cli._common import database_option, open_db

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

    db = open_db(database_url)
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
