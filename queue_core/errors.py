"""The errors the core raises. Callers map them: the API to HTTP statuses, the CLI to exit codes."""

from __future__ import annotations

from typing import Any


class QueueError(Exception):
    """Base class of every error the queue raises on purpose."""


class TaskNotFound(QueueError):
    def __init__(self, task_id: int) -> None:
        super().__init__(f"task {task_id} not found")
        self.task_id = task_id


class InvalidTransition(QueueError):
    """The task is in a state that does not allow the requested change."""

    def __init__(self, task_id: int, status: str, action: str) -> None:
        super().__init__(f"cannot {action} task {task_id}: it is {status}")
        self.task_id = task_id
        self.status = status
        self.action = action


class IdempotencyConflict(QueueError):
    """The idempotency key is already used by a task with another type or payload."""

    def __init__(self, key: str, task_id: int) -> None:
        super().__init__(
            f"idempotency key {key!r} is already used by task {task_id} "
            "with a different type or payload"
        )
        self.key = key
        self.task_id = task_id


class TaskWaitTimeout(TimeoutError):
    """TaskRepository.wait reached its deadline before the task was terminal (CONTRACT §9).

    A TimeoutError, as the contract says; ``task`` is the task as it was last read.
    """

    def __init__(self, task: Any, timeout: float) -> None:
        super().__init__(f"task {task.task_id} is still {task.status.value} after {timeout:g} s")
        self.task = task
        self.timeout = timeout


class LeaseLost(QueueError):
    """The caller no longer holds the lease: it expired and was recovered, or the task moved on."""

    def __init__(self, task_id: int, worker_id: str) -> None:
        super().__init__(f"worker {worker_id} no longer holds the lease on task {task_id}")
        self.task_id = task_id
        self.worker_id = worker_id


class DatabaseUnavailable(QueueError):
    """The database is busy beyond the busy timeout, or cannot be reached. Worth retrying."""


class SchemaMissing(QueueError):
    """The database has no queue tables yet."""

    def __init__(self, url: str) -> None:
        super().__init__(
            f"the database at {url} has no queue schema; run `prismq-queue db upgrade` first"
        )


class DatabaseMissing(QueueError):
    """A command that only reads found no database where the URL points (CONTRACT §2)."""

    def __init__(self, where: str) -> None:
        super().__init__(f"there is no database at {where}; run `prismq-queue db upgrade` first")
        self.where = where


class UnsupportedDatabase(QueueError):
    """The URL names a backend or an SQLite build the queue cannot run on."""


class NotSupportedOnBackend(QueueError):
    """The operation does not apply to this database; the message says what to do instead."""


class ScheduleNotFound(QueueError):
    def __init__(self, name: str) -> None:
        super().__init__(f"schedule {name!r} not found")
        self.name = name


class ScheduleExists(QueueError):
    """A schedule of that name exists already."""

    def __init__(self, name: str) -> None:
        super().__init__(f"schedule {name!r} already exists")
        self.name = name


class DependencyNotFound(QueueError):
    """A task was enqueued with ``depends_on`` naming tasks that do not exist."""

    def __init__(self, missing: list[int]) -> None:
        names = ", ".join(str(task_id) for task_id in missing)
        super().__init__(f"depends_on names no such task: {names}")
        self.missing = missing


class InvalidSchedule(QueueError):
    """A cron expression or time zone that cannot be used."""
