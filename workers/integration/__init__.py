"""Integration with an application that used an in-process BackgroundTaskManager.

Two managers with the old manager's methods and status vocabulary: :class:`InMemoryTaskManager`
(the old behaviour) and :class:`QueueTaskManager` (persistent, runs on workers), a factory that
picks one from ``PRISMQ_QUEUE_TASK_MANAGER``, embedded worker slots for a FastAPI app, and
migration helpers. Guide: docs/integration.md.
"""

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
from workers.integration.manager import QueueTaskManager
from workers.integration.runs import InMemoryRunRegistry, Run, RunRegistry, RunStatus
from workers.integration.status import run_status_for, task_status_for

__all__ = [
    "HandlerNotRegistered",
    "InMemoryRunRegistry",
    "InMemoryTaskManager",
    "ModuleHandler",
    "ModuleHandlers",
    "QueueManagerUnavailable",
    "QueueTaskManager",
    "Run",
    "RunRegistry",
    "RunStatus",
    "TaskManager",
    "create_task_manager",
    "discard_awaitable",
    "module_handlers",
    "open_queue_database",
    "register_module",
    "run_status_for",
    "task_status_for",
]
