"""WorkerConfig: everything ``prismq-queue worker`` takes on its command line, checked."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from queue_core.settings import (
    CONCURRENCY_DEFAULT,
    LEASE_SECONDS_DEFAULT,
    LEASE_SECONDS_MIN,
    POLL_INTERVAL_DEFAULT,
    SHUTDOWN_GRACE_SECONDS_DEFAULT,
    SWEEP_INTERVAL_SECONDS,
)
from queue_core.states import STRATEGY_DEFAULT, SchedulingStrategy
from workers.defaults import METRICS_HOST_DEFAULT, PREFETCH_DEFAULT, TASK_LOG_LEVEL_DEFAULT


@dataclass(frozen=True)
class WorkerConfig:
    """Everything ``prismq-queue worker`` takes on its command line, for embedding."""

    database_url: str | None = None
    concurrency: int = CONCURRENCY_DEFAULT
    prefetch: int = PREFETCH_DEFAULT
    """Tasks claimed beyond the free slots in one round, for task types whose handlers are
    short (measured per type); 0 switches prefetch off. See docs/workers.md."""
    strategy: SchedulingStrategy | str = STRATEGY_DEFAULT
    capabilities: Mapping[str, Any] = field(default_factory=dict)
    lease_seconds: float = LEASE_SECONDS_DEFAULT
    poll_interval: float = POLL_INTERVAL_DEFAULT
    worker_id: str | None = None
    burst: bool = False
    shutdown_grace: float = SHUTDOWN_GRACE_SECONDS_DEFAULT
    task_timeout: float | None = None
    metrics_port: int | None = None
    metrics_host: str = METRICS_HOST_DEFAULT
    sweep_interval: float | None = None
    """Seconds between recovery sweeps; default: SWEEP_INTERVAL_SECONDS, or the lease
    length when that is shorter (a lease cannot expire sooner)."""
    task_log_level: int = TASK_LOG_LEVEL_DEFAULT
    maintenance: bool = True
    """Take part in scheduled maintenance (checkpoint, optimize, purge; one runner per job
    across all workers, elected in the database; see docs/operations.md)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "strategy", SchedulingStrategy(self.strategy))
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if self.prefetch < 0:
            raise ValueError("prefetch cannot be negative")
        if self.lease_seconds < LEASE_SECONDS_MIN:
            raise ValueError(f"lease_seconds must be at least {LEASE_SECONDS_MIN:g}")
        if self.poll_interval <= 0:
            raise ValueError("poll_interval must be positive")
        if self.shutdown_grace < 0:
            raise ValueError("shutdown_grace cannot be negative")
        if self.task_timeout is not None and self.task_timeout <= 0:
            raise ValueError("task_timeout must be positive")
        if self.sweep_interval is not None and self.sweep_interval <= 0:
            raise ValueError("sweep_interval must be positive")
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise ValueError("metrics_port must be between 0 and 65535")
        if self.worker_id is not None and not self.worker_id.strip():
            raise ValueError("worker_id cannot be empty")

    @property
    def effective_sweep_interval(self) -> float:
        if self.sweep_interval is not None:
            return self.sweep_interval
        return min(SWEEP_INTERVAL_SECONDS, self.lease_seconds)
