"""The Python API for backend developers: one repository per concern."""

from queue_core.audit import log_entry
from queue_core.repositories.dashboard import DashboardRepository, DashboardSessionRepository
from queue_core.repositories.leases import (
    FailOutcome,
    LeaseRepository,
    RecoveryReport,
    RenewResult,
    retry_delay,
)
from queue_core.repositories.logs import TaskLogRepository
from queue_core.repositories.schedules import ScheduledTask, ScheduleRepository
from queue_core.repositories.tasks import (
    CancelResult,
    EnqueueResult,
    TaskRepository,
    TaskSnapshot,
)
from queue_core.repositories.types import TypeRepository
from queue_core.repositories.workers import WorkerRepository, default_worker_id, sweep
from queue_core.validation import InvalidPayload, PayloadTooLarge

__all__ = [
    "CancelResult",
    "DashboardRepository",
    "DashboardSessionRepository",
    "EnqueueResult",
    "FailOutcome",
    "InvalidPayload",
    "LeaseRepository",
    "PayloadTooLarge",
    "RecoveryReport",
    "RenewResult",
    "ScheduleRepository",
    "ScheduledTask",
    "TaskLogRepository",
    "TaskRepository",
    "TaskSnapshot",
    "TypeRepository",
    "WorkerRepository",
    "default_worker_id",
    "log_entry",
    "retry_delay",
    "sweep",
]
