"""Alembic, driven from Python: `prismq-queue db upgrade|downgrade|current` and the tests."""

from __future__ import annotations

import io
from contextlib import redirect_stdout
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from queue_core.database import Database

MIGRATIONS_PACKAGE = "migrations"


def migrations_dir() -> Path:
    import migrations

    return Path(migrations.__file__).resolve().parent


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["configure_logger"] = False
    return config


def upgrade(db: Database, revision: str = "head") -> None:
    with db.engine.connect() as connection:
        config = alembic_config(db.url)
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
        connection.commit()


def downgrade(db: Database, revision: str) -> None:
    with db.engine.connect() as connection:
        config = alembic_config(db.url)
        config.attributes["connection"] = connection
        command.downgrade(config, revision)
        connection.commit()


def current_revision(db: Database) -> str | None:
    with db.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def upgrade_sql(url: str, revision: str = "head") -> str:
    """The SQL `upgrade` would run, for review (Alembic offline mode)."""
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        command.upgrade(alembic_config(url), revision, sql=True)
    return buffer.getvalue()
