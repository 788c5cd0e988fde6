"""The switch (PRISMQ_QUEUE_TASK_MANAGER) and the fallback (…_FALLBACK)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from queue_core.settings import QueueSettings, sqlite_url_for
from workers.integration import (
    InMemoryRunRegistry,
    InMemoryTaskManager,
    QueueManagerUnavailable,
    QueueTaskManager,
    TaskManager,
    create_task_manager,
)

UNREACHABLE_PG = "postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=2"


def _close(manager: TaskManager) -> None:
    asyncio.run(manager.close())


def test_in_memory_is_the_default(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, "prismq.queue.integration"):
        manager = create_task_manager(InMemoryRunRegistry(), settings=QueueSettings())
    assert isinstance(manager, InMemoryTaskManager)
    assert isinstance(manager, TaskManager)
    assert "task manager: in-memory" in caplog.text


def test_the_environment_selects_the_queue(
    db_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("PRISMQ_QUEUE_TASK_MANAGER", "queue")
    monkeypatch.setenv("PRISMQ_QUEUE_DATABASE_URL", db_url)
    with caplog.at_level(logging.INFO, "prismq.queue.integration"):
        manager = create_task_manager(InMemoryRunRegistry())
    assert isinstance(manager, QueueTaskManager)
    assert isinstance(manager, TaskManager)
    assert "task manager: queue on" in caplog.text
    _close(manager)


@pytest.mark.parametrize("url_kind", ["no schema", "unreachable"])
def test_an_unusable_queue_fails_loudly_by_default(
    url_kind: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = sqlite_url_for(tmp_path / "empty.db") if url_kind == "no schema" else UNREACHABLE_PG
    settings = QueueSettings(task_manager="queue")
    with (
        caplog.at_level(logging.INFO, "prismq.queue.integration"),
        pytest.raises(QueueManagerUnavailable, match="TASK_MANAGER_FALLBACK=in-memory"),
    ):
        create_task_manager(InMemoryRunRegistry(), settings=settings, database_url=url)
    assert [r.levelname for r in caplog.records] == ["CRITICAL"]


@pytest.mark.parametrize("url_kind", ["no schema", "unreachable"])
def test_an_unusable_queue_falls_back_when_configured(
    url_kind: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = sqlite_url_for(tmp_path / "empty.db") if url_kind == "no schema" else UNREACHABLE_PG
    settings = QueueSettings(task_manager="queue", task_manager_fallback="in-memory")
    with caplog.at_level(logging.INFO, "prismq.queue.integration"):
        manager = create_task_manager(InMemoryRunRegistry(), settings=settings, database_url=url)
    assert isinstance(manager, InMemoryTaskManager)
    assert [r.levelname for r in caplog.records] == ["ERROR"]
    assert "FALLING BACK to the in-memory task manager" in caplog.text


def test_queue_options_reach_the_queue_manager(db_url: str) -> None:
    settings = QueueSettings(task_manager="queue")
    manager = create_task_manager(
        InMemoryRunRegistry(), settings=settings, database_url=db_url, max_attempts=2
    )
    assert isinstance(manager, QueueTaskManager)
    assert manager.max_attempts == 2
    _close(manager)
