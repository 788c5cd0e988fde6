"""The switch: PRISMQ_QUEUE_TASK_MANAGER selects the manager, and
PRISMQ_QUEUE_TASK_MANAGER_FALLBACK what happens when the queue is unavailable at start-up."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from queue_core.database import Database
from queue_core.errors import QueueError
from queue_core.repositories import TaskRepository
from queue_core.settings import QueueSettings
from workers.integration.handlers import ModuleHandlers
from workers.integration.inmemory import InMemoryTaskManager
from workers.integration.interface import TaskManager
from workers.integration.manager import QueueTaskManager
from workers.integration.runs import RunRegistry

log = logging.getLogger("prismq.queue.integration")


class QueueManagerUnavailable(QueueError):
    """PRISMQ_QUEUE_TASK_MANAGER=queue, the queue database cannot be used, and the fallback
    is ``fail``."""


def open_queue_database(settings: QueueSettings, database_url: str | None = None) -> Database:
    """Open the queue database and prove it usable: reachable, and migrated."""
    db = Database(database_url, settings)
    try:
        TaskRepository(db).snapshots(ids=[1])  # a read of the queue table: reachable, migrated
    except BaseException:
        db.dispose()
        raise
    return db


def create_task_manager(
    registry: RunRegistry,
    *,
    settings: QueueSettings | None = None,
    handlers: ModuleHandlers | None = None,
    database_url: str | None = None,
    **queue_options: Any,
) -> TaskManager:
    """The manager the settings ask for. ``queue_options`` go to :class:`QueueTaskManager`."""
    settings = settings or QueueSettings()
    if settings.task_manager == "in-memory":
        log.info("task manager: in-memory (PRISMQ_QUEUE_TASK_MANAGER=in-memory)")
        return InMemoryTaskManager(registry, handlers)
    try:
        db = open_queue_database(settings, database_url)
    except (QueueError, SQLAlchemyError, OSError) as exc:
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
        if settings.task_manager_fallback == "in-memory":
            log.error(
                "task manager: the queue database is unavailable (%s); FALLING BACK to the "
                "in-memory task manager (PRISMQ_QUEUE_TASK_MANAGER_FALLBACK=in-memory): runs "
                "will not survive a restart",
                reason,
            )
            return InMemoryTaskManager(registry, handlers)
        log.critical(
            "task manager: the queue database is unavailable (%s) and "
            "PRISMQ_QUEUE_TASK_MANAGER_FALLBACK=fail",
            reason,
        )
        raise QueueManagerUnavailable(
            f"PRISMQ_QUEUE_TASK_MANAGER=queue but the queue database is unavailable ({reason}); "
            "fix the database (prismq-queue db upgrade) or set "
            "PRISMQ_QUEUE_TASK_MANAGER_FALLBACK=in-memory"
        ) from exc
    log.info("task manager: queue on %s (PRISMQ_QUEUE_TASK_MANAGER=queue)", db.safe_url)
    return QueueTaskManager(registry, db, handlers, owns_db=True, **queue_options)
