"""Fixtures shared by every test: one conformance suite, run on SQLite and on PostgreSQL.

PostgreSQL tests read ``PRISMQ_QUEUE_TEST_POSTGRES_URL`` (`.ci/run` exports it). Each test
session works in a schema of its own, so parallel sessions on one server do not collide.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from queue_core import migrate
from queue_core.clock import ManualClock
from queue_core.database import Database
from queue_core.settings import sqlite_url_for

PG_ENV = "PRISMQ_QUEUE_TEST_POSTGRES_URL"
BACKENDS = ["sqlite", "postgresql"]


def pytest_configure(config: pytest.Config) -> None:
    # Test processes must never touch a developer's real queue.
    os.environ.pop("PRISMQ_QUEUE_DATABASE_URL", None)
    os.environ.pop("PRISMQ_QUEUE_DB_PATH", None)
    os.environ.pop("PRISMQ_QUEUE_API_KEYS", None)


def _pg_base_url() -> str | None:
    return os.environ.get(PG_ENV) or None


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file; each test gets a copy (faster than migrating each time)."""
    path = tmp_path_factory.mktemp("template") / "queue.db"
    db = Database(sqlite_url_for(path))
    migrate.upgrade(db)
    db.dispose()  # the last connection to close checkpoints the WAL into the file
    return path


@pytest.fixture(scope="session")
def pg_schema_url() -> Iterator[str]:
    base = _pg_base_url()
    if base is None:
        pytest.skip(
            f"PostgreSQL tests need {PG_ENV} (e.g. postgresql+psycopg://postgres@127.0.0.1/test)"
        )
    schema = f"prismq_test_{uuid.uuid4().hex[:10]}"
    # pre-ping: a dropped connection is replaced rather than failing the next test
    admin = create_engine(Database(base).url, pool_pre_ping=True)
    try:
        with admin.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
    except Exception as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"PostgreSQL at {make_url(base).render_as_string()} is unreachable: {exc}")
    url = make_url(Database(base).url).update_query_dict({"options": f"-csearch_path={schema}"})
    schema_url = url.render_as_string(hide_password=False)
    db = Database(schema_url)
    migrate.upgrade(db)
    db.dispose()
    try:
        yield schema_url
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def _reset_postgres(url: str) -> None:
    db = Database(url)
    try:
        with db.engine.begin() as conn:
            conn.execute(
                text(
                    "TRUNCATE task_logs, task_queue, workers, maintenance_leases, "
                    "dashboard_sessions, queue_samples, schedules, task_types, task_type_claims "
                    "RESTART IDENTITY CASCADE"
                )
            )
            conn.execute(text("UPDATE task_queue_clock SET vtime = 0"))
    finally:
        db.dispose()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty queue database on the parametrised backend."""
    if backend == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        target = tmp_path / "queue.db"
        shutil.copyfile(template, target)
        return sqlite_url_for(target)
    url: str = request.getfixturevalue("pg_schema_url")
    _reset_postgres(url)
    return url


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    yield database
    database.dispose()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def sqlite_url(tmp_path: Path, sqlite_template: Path) -> str:
    """A migrated SQLite database, for tests that are about SQLite only."""
    target = tmp_path / "only.db"
    shutil.copyfile(sqlite_template, target)
    return sqlite_url_for(target)


@pytest.fixture
def blank_db_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database with no schema at all, for migration and `db` command tests.

    SQLite: a file path that does not exist yet. PostgreSQL: a fresh schema of its own,
    dropped afterwards, so a test that migrates up and down never disturbs the shared one.
    """
    if backend == "sqlite":
        yield sqlite_url_for(tmp_path / "blank.db")
        return
    base: str = request.getfixturevalue("pg_schema_url")
    schema = f"prismq_blank_{uuid.uuid4().hex[:10]}"
    admin = Database(base)
    try:
        with admin.engine.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
        url = make_url(admin.url).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.engine.begin() as conn:
            conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        admin.dispose()
