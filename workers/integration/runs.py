"""Runs as the old BackgroundTaskManager knew them, and the registry that records them.

A run is one piece of work a caller asked for: ``module_id`` names the kind of work,
``parameters`` its input. The registry is the application's record of runs (its run history);
both task managers write every status change to it through ``add_run`` and ``update_run``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import Enum
from typing import Any, Protocol, runtime_checkable

from queue_core.clock import utcnow


class RunStatus(str, Enum):
    """The old manager's status vocabulary, kept by both managers."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_RUN_STATUSES


TERMINAL_RUN_STATUSES = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED})


@dataclass
class Run:
    run_id: str
    module_id: str
    parameters: dict[str, Any] = field(default_factory=dict)
    status: RunStatus = RunStatus.QUEUED
    created_at: datetime = field(default_factory=utcnow)
    started_at: datetime | None = None
    completed_at: datetime | None = None
    exit_code: int | None = None
    error_message: str | None = None
    task_id: int | None = None
    """The queue task that carries this run, once a QueueTaskManager has enqueued it."""

    def __post_init__(self) -> None:
        self.status = RunStatus(self.status)  # a registry may hand back plain strings

    def mark_running(self, at: datetime | None = None) -> None:
        self.status = RunStatus.RUNNING
        self.started_at = self.started_at or at or utcnow()

    def mark_completed(self, at: datetime | None = None) -> None:
        self.status = RunStatus.COMPLETED
        self.exit_code = 0
        self.error_message = None
        self.completed_at = at or utcnow()

    def mark_failed(self, error: str, at: datetime | None = None) -> None:
        self.status = RunStatus.FAILED
        self.error_message = error
        self.completed_at = at or utcnow()

    def mark_cancelled(self, at: datetime | None = None) -> None:
        self.status = RunStatus.CANCELLED
        self.completed_at = at or utcnow()


@runtime_checkable
class RunRegistry(Protocol):
    """Where the application keeps its runs. Called from the event loop's thread only."""

    def add_run(self, run: Run) -> None: ...

    def update_run(self, run: Run) -> None: ...

    def get_run(self, run_id: str) -> Run | None: ...


class InMemoryRunRegistry:
    """A RunRegistry in a dict, for tests and single-process tools.

    It stores copies, so a caller holding a Run object sees changes only through ``get_run``,
    as it would with a database-backed registry.
    """

    def __init__(self) -> None:
        self._runs: dict[str, Run] = {}
        self._lock = threading.Lock()
        self.history: list[tuple[str, RunStatus]] = []
        """Every status written, in order: what the compatibility tests compare."""

    def add_run(self, run: Run) -> None:
        with self._lock:
            self._runs[run.run_id] = replace(run)
            self._record(run)

    def update_run(self, run: Run) -> None:
        with self._lock:
            if run.run_id not in self._runs:
                raise KeyError(f"run {run.run_id!r} was never added")
            self._runs[run.run_id] = replace(run)
            self._record(run)

    def get_run(self, run_id: str) -> Run | None:
        with self._lock:
            run = self._runs.get(run_id)
            return replace(run) if run is not None else None

    def list_runs(self) -> list[Run]:
        with self._lock:
            return [replace(run) for run in self._runs.values()]

    def statuses(self, run_id: str) -> list[RunStatus]:
        """The distinct statuses a run went through, in order."""
        seen: list[RunStatus] = []
        for rid, status in self.history:
            if rid == run_id and (not seen or seen[-1] is not status):
                seen.append(status)
        return seen

    def _record(self, run: Run) -> None:
        self.history.append((run.run_id, run.status))
