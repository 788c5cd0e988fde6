"""Alembic migrations on both backends: every revision up and down, populated databases keep
their rows, the models and the migrations agree, and the DBA entry points work.

Written over ``ScriptDirectory.walk_revisions()``, so a new revision is covered when it lands.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url

from queue_core import migrate
from queue_core.clock import ManualClock
from queue_core.database import Database
from queue_core.models import Base
from queue_core.repositories import LeaseRepository, TaskRepository, WorkerRepository
from queue_core.settings import sqlite_url_for

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ScriptDirectory.from_config(migrate.alembic_config("sqlite://"))
REVISIONS = list(reversed(list(SCRIPT.walk_revisions())))  # base first
CORE_TABLES = {"task_queue", "task_logs", "workers"}
SUBPROCESS_TIMEOUT = 120


def _tables(db: Database) -> set[str]:
    return set(inspect(db.engine).get_table_names()) - {"alembic_version"}


def _snapshot(db: Database, tables: set[str]) -> dict[str, list[dict[str, Any]]]:
    with db.read() as conn:
        return {
            table: [
                dict(row._mapping)
                for row in conn.execute(text(f"SELECT * FROM {table} ORDER BY 1"))
            ]
            for table in sorted(tables)
        }


def _kept(
    before: dict[str, list[dict[str, Any]]], after: dict[str, list[dict[str, Any]]]
) -> dict[str, list[dict[str, Any]]]:
    """``before`` cut down to the tables and columns ``after`` has: a downgrade may drop the
    columns its revision added, never a row or another column's value."""
    return {
        table: [
            {column: row[column] for column in (rows[0] if rows else {})} for row in before[table]
        ]
        for table, rows in after.items()
    }


def _populate(db: Database) -> None:
    clock = ManualClock()
    tasks, leases = TaskRepository(db, clock), LeaseRepository(db, clock)
    WorkerRepository(db, clock).register("w1", capabilities={"gpu": True}, task_types=["t"])
    for i in range(6):
        tasks.enqueue(type="t", payload={"i": i, "s": "ünïcode"}, idempotency_key=f"k{i}")
    [a, b, c] = leases.claim("w1", ["t"], limit=3)
    leases.complete(a.lease, {"answer": 42})
    leases.fail(b.lease, "boom", permanent=True)
    tasks.cancel(tasks.enqueue(type="t").task.task_id)
    clock.advance(1)
    del c  # stays leased


def test_revisions_form_one_line() -> None:
    assert REVISIONS, "no migrations found"
    assert REVISIONS[0].down_revision is None
    assert len(SCRIPT.get_heads()) == 1
    assert migrate.head_revision() == REVISIONS[-1].revision


def test_each_revision_up_then_all_the_way_down(blank_db_url: str) -> None:
    with Database(blank_db_url) as db:
        assert migrate.current_revision(db) is None
        for script in REVISIONS:
            migrate.upgrade(db, script.revision)
            assert migrate.current_revision(db) == script.revision
        _assert_schema_is_the_models(db)
        for script in reversed(REVISIONS):
            migrate.downgrade(db, script.down_revision or "base")  # type: ignore[arg-type]
            assert migrate.current_revision(db) == script.down_revision
        assert _tables(db) == set()
        assert inspect(db.engine).get_view_names() == []
        migrate.upgrade(db)
        assert migrate.current_revision(db) == REVISIONS[-1].revision
        TaskRepository(db).enqueue(type="after.a.full.cycle")


@pytest.mark.parametrize(
    "revision", [s.revision for s in REVISIONS if s.down_revision is not None] or [None]
)
def test_down_and_up_again_on_a_populated_database_loses_nothing(
    blank_db_url: str, revision: str | None
) -> None:
    if revision is None:
        pytest.skip("one revision only: its downgrade drops the schema (tested above)")
    script = SCRIPT.get_revision(revision)
    with Database(blank_db_url) as db:
        migrate.upgrade(db)
        _populate(db)
        before = _snapshot(db, _tables(db))

        migrate.downgrade(db, script.down_revision)  # type: ignore[arg-type]
        kept = _tables(db)
        assert kept >= CORE_TABLES
        after = _snapshot(db, kept)
        assert after == _kept(before, after)

        migrate.upgrade(db)
        assert _snapshot(db, kept) == {t: before[t] for t in kept}
        # The queue still works on the data it had.
        tasks = TaskRepository(db)
        assert (
            tasks.enqueue(type="t", idempotency_key="k0", payload={"i": 0, "s": "ünïcode"}).created
            is False
        )
        assert tasks.stats().total_tasks == 7


def _assert_schema_is_the_models(db: Database) -> None:
    inspector = inspect(db.engine)
    assert _tables(db) == set(Base.metadata.tables)
    for table in Base.metadata.tables.values():
        reflected = {ix["name"]: ix for ix in inspector.get_indexes(table.name)}
        for index in table.indexes:
            assert index.name in reflected, f"{table.name}: index {index.name} is missing"
            got = reflected[index.name]
            assert got["column_names"] == [c.name for c in index.columns], index.name
            assert bool(got["unique"]) == bool(index.unique), index.name
            where = index.dialect_options[db.dialect.name]["where"]
            if where is not None:
                assert _partial_where(db, str(index.name)) == _squash(str(where)), index.name


def _partial_where(db: Database, index: str) -> str:
    sql = {
        "sqlite": "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = :n",
        "postgresql": "SELECT pg_get_indexdef(CAST(:n AS regclass))",
    }[db.dialect.name]
    with db.read() as conn:
        definition = str(conn.execute(text(sql), {"n": index}).scalar())
    return _squash(definition.split(" WHERE ", 1)[1])


def _squash(sql: str) -> str:
    """Compare WHERE clauses as text, ignoring what PostgreSQL adds when it prints them."""
    for noise in ("(", ")", "::text", "::character varying", '"'):
        sql = sql.replace(noise, "")
    return " ".join(sql.split()).lower()


def test_models_and_migrations_agree(db: Database) -> None:
    """What `alembic revision --autogenerate` would write for the migrated schema: nothing."""
    with db.engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "target_metadata": Base.metadata}
        )
        assert compare_metadata(context, Base.metadata) == []
    _assert_schema_is_the_models(db)


# --- what DBAs run ---


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRISMQ_QUEUE_")}
    env.update(extra)
    return env


def _run(
    args: list[str], env: dict[str, str], cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT
    )


def test_alembic_upgrade_head_sql_prints_reviewable_postgresql() -> None:
    # Offline mode: nothing connects to this address.
    env = _env(PRISMQ_QUEUE_DATABASE_URL="postgresql://dba@127.0.0.1:5432/queue")
    done = _run([sys.executable, "-m", "alembic", "upgrade", "head", "--sql"], env)
    assert done.returncode == 0, done.stderr
    sql = done.stdout
    assert sql.lstrip().startswith("BEGIN;")
    assert sql.rstrip().endswith("COMMIT;")
    assert "CREATE TABLE task_queue (" in sql
    assert "run_after_utc TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL" in sql
    assert "compatibility JSONB" in sql
    assert (
        "CREATE UNIQUE INDEX uq_task_queue_idempotency_key ON task_queue (idempotency_key) "
        "WHERE idempotency_key IS NOT NULL;" in sql
    )
    assert "typeof(" not in sql  # the SQLite-only CHECKs stay out of PostgreSQL's DDL
    for script in REVISIONS:
        assert f"UPDATE alembic_version SET version_num='{script.revision}'" in sql or (
            f"INSERT INTO alembic_version (version_num) VALUES ('{script.revision}')" in sql
        )


def test_alembic_upgrade_head_migrates_the_database_named_by_the_environment(
    blank_db_url: str, backend: str, tmp_path: Path
) -> None:
    if backend == "sqlite":
        path = tmp_path / "dba" / "nested" / "queue.db"  # parents do not exist yet
        env = _env(PRISMQ_QUEUE_DB_PATH=str(path))
        url = sqlite_url_for(path)
    else:
        env = _env(PRISMQ_QUEUE_DATABASE_URL=blank_db_url)
        url = blank_db_url
    done = _run([sys.executable, "-m", "alembic", "upgrade", "head"], env)
    assert done.returncode == 0, done.stderr
    with Database(url) as db:
        assert migrate.current_revision(db) == migrate.head_revision()
        assert _tables(db) == set(Base.metadata.tables)


def _cli(args: list[str], url: str) -> subprocess.CompletedProcess[str]:
    return _run([sys.executable, "-m", "queue_core.cli", *args, "--database-url", url], _env())


def test_db_commands(blank_db_url: str) -> None:
    head = migrate.head_revision()

    done = _cli(["db", "current"], blank_db_url)
    if blank_db_url.startswith("sqlite"):
        # A read-only command creates no file (CONTRACT §2): it says there is no database.
        assert done.returncode == 1, done.stdout
        assert "no database" in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
        assert not Path(make_url(blank_db_url).database or "").exists()
    else:
        assert (done.returncode, done.stdout.strip()) == (0, f"none (head is {head})")

    done = _cli(["db", "upgrade"], blank_db_url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith(f"is at revision {head}")
    assert _cli(["db", "current"], blank_db_url).stdout.strip() == f"{head} (up to date)"

    done = _cli(["db", "downgrade", "base"], blank_db_url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("is at revision None")
    with Database(blank_db_url) as db:
        assert _tables(db) == set()


def test_db_upgrade_sql_prints_without_touching_the_database(tmp_path: Path) -> None:
    path = tmp_path / "untouched.db"
    done = _cli(["db", "upgrade", "--sql"], sqlite_url_for(path))
    assert done.returncode == 0, done.stderr
    assert "CREATE TABLE task_queue" in done.stdout
    assert "typeof(run_after_utc) IN ('integer', 'null')" in done.stdout  # SQLite's CHECKs
    assert not path.exists() or path.stat().st_size == 0
