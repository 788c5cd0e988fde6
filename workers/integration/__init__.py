"""Integration with an application that used an in-process BackgroundTaskManager.

Two managers with the old manager's methods and status vocabulary: :class:`InMemoryTaskManager`
(the old behaviour) and :class:`QueueTaskManager` (persistent, runs on workers), a factory that
picks one from ``PRISMQ_QUEUE_TASK_MANAGER``, embedded worker slots for a FastAPI app, and
migration helpers. Guide: docs/integration.md.
"""

from workers.integration.embedded import EmbeddedWorkers, embedded_workers
from workers.integration.factory import (
    QueueManagerUnavailable,
    create_task_manager,
    open_queue_database,
)
from workers.integration.handlers import (
    HandlerNotRegistered,
    ModuleHandler,
    ModuleHandlers,
    discard_awaitable,
    module_handlers,
    register_module,
)
from workers.integration.inmemory import InMemoryTaskManager
from workers.integration.interface import TaskManager
from workers.integration.lifespan import task_manager_lifespan
from workers.integration.manager import QueueTaskManager
from workers.integration.migration import (
    MigrationReport,
    RollbackReport,
    migrate_runs_to_queue,
    rollback_to_in_memory,
)
from workers.integration.runs import InMemoryRunRegistry, Run, RunRegistry, RunStatus
from workers.integration.status import run_status_for, task_status_for

__all__ = [
    "EmbeddedWorkers",
    "HandlerNotRegistered",
    "InMemoryRunRegistry",
    "InMemoryTaskManager",
    "MigrationReport",
    "ModuleHandler",
    "ModuleHandlers",
    "QueueManagerUnavailable",
    "QueueTaskManager",
    "RollbackReport",
    "Run",
    "RunRegistry",
    "RunStatus",
    "TaskManager",
    "create_task_manager",
    "discard_awaitable",
    "embedded_workers",
    "migrate_runs_to_queue",
    "module_handlers",
    "open_queue_database",
    "register_module",
    "rollback_to_in_memory",
    "run_status_for",
    "task_manager_lifespan",
    "task_status_for",
]
