"""prismq-queue core: models, engine, repositories, the dialects (claim SQL) and maintenance.

This package imports neither ``api`` nor ``workers``.
"""

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
    "WorkerInfo",
    "WorkerRepository",
]
