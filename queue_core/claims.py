"""What a claim asks for and what it hands out: the request, the claimed task, its lease.

Plain values shared by the dialects (which fill them from rows), the repositories and the
workers. The claim SQL itself lives in :mod:`queue_core.dialects`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from queue_core.settings import IDLE_SLEEP_MAX_SECONDS

_SLEEP_MAX = timedelta(seconds=IDLE_SLEEP_MAX_SECONDS)


def wakes_sleepers(run_after: datetime, now: datetime) -> bool:
    """Whether a task (re)queued to run at ``run_after`` must wake idle workers: they may be
    asleep until the next due time they saw, at most IDLE_SLEEP_MAX_SECONDS; a task due
    later is found when they wake anyway."""
    return run_after - now <= _SLEEP_MAX


@dataclass(frozen=True)
class Lease:
    """What a worker must present to change a task it claimed. The token is never reused."""

    task_id: int
    worker_id: str
    lease_token: int
    attempt: int


@dataclass(frozen=True)
class ClaimedTask:
    task_id: int
    type: str
    payload: dict[str, Any]
    priority: int
    attempt: int
    max_attempts: int
    lease_token: int
    timeout_seconds: float | None
    run_after_utc: datetime
    lease_until_utc: datetime
    cancel_requested: bool
    worker_id: str
    wr_key: float | None = None

    @property
    def lease(self) -> Lease:
        return Lease(self.task_id, self.worker_id, self.lease_token, self.attempt)


@dataclass(frozen=True)
class ClaimRequest:
    worker_id: str
    types: Sequence[str]
    capabilities: Mapping[str, Any] = field(default_factory=dict)
    limit: int = 1
    lease_seconds: float = 30.0


__all__ = ["ClaimRequest", "ClaimedTask", "Lease"]
