"""prismq-queue core: models, engine, repositories, the dialects (claim SQL) and maintenance.

This package imports neither ``api`` nor ``workers``.

The names below load on first use (PEP 562), so that importing a light submodule such as
``queue_core.cli`` does not pay for SQLAlchemy, the models and the repositories: the
command line starts fast, and each command imports only what it runs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from queue_core.claims import ClaimedTask, Lease
    from queue_core.database import Database
    from queue_core.errors import (
        DatabaseUnavailable,
        IdempotencyConflict,
        InvalidTransition,
        LeaseLost,
        QueueError,
        SchemaMissing,
        TaskNotFound,
        TaskWaitTimeout,
    )
    from queue_core.repositories import (
        LeaseRepository,
        TaskLogRepository,
        TaskRepository,
        WorkerRepository,
    )
    from queue_core.schemas import QueueStats, Task, TaskCreate, TaskLog, WorkerInfo
    from queue_core.settings import QueueSettings
    from queue_core.states import SchedulingStrategy, TaskStatus

_HOME = {
    "ClaimedTask": "queue_core.claims",
    "Lease": "queue_core.claims",
    "Database": "queue_core.database",
    "DatabaseUnavailable": "queue_core.errors",
    "IdempotencyConflict": "queue_core.errors",
    "InvalidTransition": "queue_core.errors",
    "LeaseLost": "queue_core.errors",
    "QueueError": "queue_core.errors",
    "SchemaMissing": "queue_core.errors",
    "TaskNotFound": "queue_core.errors",
    "TaskWaitTimeout": "queue_core.errors",
    "LeaseRepository": "queue_core.repositories",
    "TaskLogRepository": "queue_core.repositories",
    "TaskRepository": "queue_core.repositories",
    "WorkerRepository": "queue_core.repositories",
    "QueueStats": "queue_core.schemas",
    "Task": "queue_core.schemas",
    "TaskCreate": "queue_core.schemas",
    "TaskLog": "queue_core.schemas",
    "WorkerInfo": "queue_core.schemas",
    "QueueSettings": "queue_core.settings",
    "SchedulingStrategy": "queue_core.states",
    "TaskStatus": "queue_core.states",
}

__all__ = [
    "ClaimedTask",
    "Database",
    "DatabaseUnavailable",
    "IdempotencyConflict",
    "InvalidTransition",
    "Lease",
    "LeaseLost",
    "LeaseRepository",
    "QueueError",
    "QueueSettings",
    "QueueStats",
    "SchedulingStrategy",
    "SchemaMissing",
    "Task",
    "TaskCreate",
    "TaskLog",
    "TaskLogRepository",
    "TaskNotFound",
    "TaskRepository",
    "TaskStatus",
    "TaskWaitTimeout",
    "WorkerInfo",
    "WorkerRepository",
]


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'queue_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
