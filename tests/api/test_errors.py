"""Database failures map to proper statuses; nothing ever answers with a traceback."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api import create_app
from queue_core.database import Database
from queue_core.settings import RETRY_AFTER_SECONDS, QueueSettings, sqlite_url_for

TASKS = "/api/queue/tasks"


@pytest.fixture
def locked_sqlite(sqlite_url: str) -> Iterator[str]:
    """A SQLite database whose write lock another connection holds."""
    path = sqlite_url.removeprefix("sqlite:///")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        yield sqlite_url
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_busy_database_is_503_with_retry_after(locked_sqlite: str) -> None:
    db = Database(locked_sqlite, QueueSettings(sqlite_busy_timeout_ms=50))
    with TestClient(create_app(database=db), raise_server_exceptions=False) as client:
        response = client.post(TASKS, json={"type": "demo.echo"})
        assert response.status_code == 503
        assert response.headers["retry-after"] == str(RETRY_AFTER_SECONDS)
        assert "database" in response.json()["detail"]
        # Reads do not wait for the writer in WAL mode.
        assert client.get(TASKS).status_code == 200
    db.dispose()


def test_database_without_schema_is_503(tmp_path: Path) -> None:
    db = Database(sqlite_url_for(tmp_path / "empty.db"))
    with TestClient(create_app(database=db), raise_server_exceptions=False) as client:
        response = client.get(f"{TASKS}/1")
        assert response.status_code == 503
        assert "db upgrade" in response.json()["detail"]
        assert client.get("/health").status_code == 200
    db.dispose()


def test_unreachable_database_fails_health_and_metrics_say_so(tmp_path: Path) -> None:
    # A directory where the database file should be: SQLite cannot open it.
    db = Database(sqlite_url_for(tmp_path))
    with TestClient(create_app(database=db), raise_server_exceptions=False) as client:
        health = client.get("/health")
        assert health.status_code == 503
        assert health.json() == {"status": "unavailable", "detail": "database unavailable"}
        assert client.get(f"{TASKS}/1").status_code == 503
        metrics = client.get("/metrics")
        assert metrics.status_code == 200
        assert "prismq_queue_database_up 0.0" in metrics.text
    db.dispose()


def test_unexpected_error_is_500_without_traceback(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    db = Database(db_url)
    app = create_app(database=db)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret internals /home/user/app.py line 12")

    with TestClient(app, raise_server_exceptions=False) as client, caplog.at_level(logging.ERROR):
        response = client.get("/boom")
    assert response.status_code == 500
    assert response.json() == {"detail": "internal error"}
    assert "secret" not in response.text
    assert "Traceback" not in response.text
    assert any("unhandled error on GET /boom" in r.getMessage() for r in caplog.records)
    db.dispose()


def test_unknown_path_and_method_have_json_detail(client: TestClient) -> None:
    missing = client.get("/api/queue/nothing")
    assert missing.status_code == 404
    assert "detail" in missing.json()
    wrong = client.delete(f"{TASKS}/1")
    assert wrong.status_code == 405
    assert "detail" in wrong.json()
