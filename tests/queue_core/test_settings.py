"""Where the database is (CONTRACT §2) and the settings read from PRISMQ_QUEUE_* variables."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from queue_core.database import Database
from queue_core.dialects.postgresql import normalise_url
from queue_core.errors import UnsupportedDatabase
from queue_core.settings import (
    ENV_PREFIX,
    PAYLOAD_MAX_BYTES_DEFAULT,
    WINDOWS_DEFAULT_DB,
    QueueSettings,
    default_db_path,
    resolve_database_url,
    sqlite_url_for,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """A clean environment whose platform data directory is inside tmp_path."""
    for name in ("DATABASE_URL", "DB_PATH"):
        monkeypatch.delenv(ENV_PREFIX + name, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("USERPROFILE", str(tmp_path / "home"))  # what ~ means on Windows
    return monkeypatch


def test_resolution_order(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    flag = "sqlite:///" + (tmp_path / "flag.db").as_posix()
    env_url = "sqlite:///" + (tmp_path / "env.db").as_posix()
    env_path = tmp_path / "path.db"

    assert resolve_database_url() == sqlite_url_for(default_db_path())
    env.setenv("PRISMQ_QUEUE_DB_PATH", str(env_path))
    assert resolve_database_url() == sqlite_url_for(env_path)
    env.setenv("PRISMQ_QUEUE_DATABASE_URL", env_url)
    assert resolve_database_url() == env_url
    assert resolve_database_url(flag) == flag
    assert QueueSettings().resolved_database_url(flag) == flag
    env.setenv("PRISMQ_QUEUE_DATABASE_URL", "")  # set but empty counts as unset
    assert resolve_database_url() == sqlite_url_for(env_path)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="XDG is the Linux convention")
def test_platform_default_is_the_user_data_directory(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    expected = tmp_path / "xdg" / "prismq" / "queue" / "queue.db"
    assert default_db_path() == expected
    with Database() as db:
        assert db.url == sqlite_url_for(expected)
    assert expected.parent.is_dir()  # missing parent directories are created


def test_windows_default_is_pinned() -> None:
    assert str(WINDOWS_DEFAULT_DB) in (
        r"C:\Data\PrismQ\queue\queue.db",
        "C:/Data/PrismQ/queue/queue.db",
    )
    if sys.platform == "win32":
        assert default_db_path() == WINDOWS_DEFAULT_DB


def test_db_path_creates_parents_and_expands_home(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    nested = tmp_path / "a" / "b" / "c" / "queue.db"
    env.setenv("PRISMQ_QUEUE_DB_PATH", str(nested))
    with Database() as db:
        assert db.url == sqlite_url_for(nested)
    assert nested.parent.is_dir()

    env.setenv("PRISMQ_QUEUE_DB_PATH", "~/queues/q.db")
    with Database() as db:
        assert db.url == sqlite_url_for(tmp_path / "home" / "queues" / "q.db")
    assert (tmp_path / "home" / "queues").is_dir()


def test_relative_db_path_is_made_absolute(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env.chdir(tmp_path)
    env.setenv("PRISMQ_QUEUE_DB_PATH", "rel/queue.db")
    assert (
        resolve_database_url()
        == "sqlite:///" + (tmp_path / "rel" / "queue.db").resolve().as_posix()
    )


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://user:pw@127.0.0.1:5432/queue",
        "postgres://user:pw@127.0.0.1:5432/queue",
        "postgresql+psycopg://user:pw@127.0.0.1:5432/queue",
    ],
)
def test_postgresql_urls_mean_psycopg_3(url: str) -> None:
    assert normalise_url(url) == "postgresql+psycopg://user:pw@127.0.0.1:5432/queue"
    db = Database(url)  # builds the engine; connects only when used
    try:
        assert db.engine.url.drivername == "postgresql+psycopg"
        assert db.url == "postgresql+psycopg://user:pw@127.0.0.1:5432/queue"
        assert db.dialect.name == "postgresql"
        assert "pw" not in db.safe_url
    finally:
        db.dispose()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql+psycopg2://u@127.0.0.1/q", "psycopg2"),
        ("mysql://u@127.0.0.1/q", "unsupported database 'mysql'"),
    ],
)
def test_unsupported_urls(url: str, message: str) -> None:
    with pytest.raises(UnsupportedDatabase, match=message):
        Database(url)


def test_every_setting_is_read_from_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRISMQ_QUEUE_PAYLOAD_MAX_BYTES", "2048")
    monkeypatch.setenv("PRISMQ_QUEUE_SQLITE_BUSY_TIMEOUT_MS", "250")
    monkeypatch.setenv("PRISMQ_QUEUE_WORKER_STALE_AFTER_SECONDS", "7.5")
    monkeypatch.setenv("PRISMQ_QUEUE_API_KEYS", " a, b ,,c ")
    settings = QueueSettings()
    assert settings.payload_max_bytes == 2048
    assert settings.sqlite_busy_timeout_ms == 250
    assert settings.worker_stale_after_seconds == 7.5
    assert settings.api_key_list() == ["a", "b", "c"]
    assert QueueSettings.model_fields["payload_max_bytes"].default == PAYLOAD_MAX_BYTES_DEFAULT
    monkeypatch.setenv("PRISMQ_QUEUE_PAYLOAD_MAX_BYTES", "0")
    with pytest.raises(ValidationError):
        QueueSettings()


def test_every_setting_is_documented() -> None:
    """docs/configuration.md names the variable of every QueueSettings field."""
    text = DOCS.read_text(encoding="utf-8")
    missing = [
        ENV_PREFIX + name.upper()
        for name in QueueSettings.model_fields
        if f"`{ENV_PREFIX}{name.upper()}`" not in text
    ]
    assert missing == [], f"document these in docs/configuration.md: {missing}"


def test_every_engine_constant_is_documented() -> None:
    """The SQLite and PostgreSQL tuning constants each have their reason in the docs."""
    from queue_core import settings as module

    text = DOCS.read_text(encoding="utf-8")
    constants = [name for name in vars(module) if name.startswith(("SQLITE_", "PG_"))]
    assert constants
    assert [name for name in constants if f"`{name}`" not in text] == []


@pytest.mark.postgres
def test_prepared_statements_can_be_switched_off_for_poolers(pg_schema_url: str) -> None:
    """PRISMQ_QUEUE_PG_PREPARED_STATEMENTS=false: psycopg never prepares (PgBouncer < 1.21)."""
    for enabled, threshold in ((True, 5), (False, None)):
        db = Database(pg_schema_url, QueueSettings(pg_prepared_statements=enabled))
        try:
            with db.engine.connect() as conn:
                assert conn.connection.driver_connection.prepare_threshold == threshold
        finally:
            db.dispose()


@pytest.mark.postgres
def test_a_session_left_idle_in_a_transaction_is_ended(pg_schema_url: str) -> None:
    """A host cut off mid-transaction must not hold its row locks until TCP keepalive."""
    import time

    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    db = Database(pg_schema_url)
    try:
        with db.engine.connect() as conn:
            for name, expected in (
                ("idle_in_transaction_session_timeout", "10s"),
                ("tcp_user_timeout", "10000"),  # ms: results sent, never acknowledged
                ("tcp_keepalives_idle", "5"),
            ):
                assert conn.execute(text(f"SHOW {name}")).scalar() == expected
    finally:
        db.dispose()
    db = Database(pg_schema_url, QueueSettings(pg_lost_client_timeout_seconds=0.3))
    try:
        with db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))  # a transaction is open now, then the client is gone
            time.sleep(1.5)
            with pytest.raises(DBAPIError):
                conn.execute(text("SELECT 1"))
    finally:
        db.dispose()
