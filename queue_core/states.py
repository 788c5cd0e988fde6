"""Task states (CONTRACT §4) and scheduling strategies (CONTRACT §5)."""

from __future__ import annotations

from enum import Enum


class TaskStatus(str, Enum):
    QUEUED = "queued"
    LEASED = "leased"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


ALL_STATES = tuple(s.value for s in TaskStatus)
TERMINAL_STATES = frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED})
RETRYABLE_STATES = frozenset({TaskStatus.FAILED, TaskStatus.CANCELLED})


class SchedulingStrategy(str, Enum):
    FIFO = "fifo"
    LIFO = "lifo"
    PRIORITY = "priority"
    WEIGHTED_RANDOM = "weighted_random"

    def __str__(self) -> str:
        return self.value


STRATEGY_DEFAULT = SchedulingStrategy.PRIORITY
