"""Attempt: one claimed task inside a worker, from its claim until its outcome is recorded."""

from __future__ import annotations

from dataclasses import dataclass

from queue_core.claims import ClaimedTask, Lease
from workers.context import TaskContext
from workers.execution import Execution, Outcome
from workers.registry import Handler
from workers.tasklog import ContextAdapter


@dataclass(eq=False)
class Attempt:
    """One claimed task inside this worker, from claim until its outcome is recorded."""

    task: ClaimedTask
    handler: Handler
    ctx: TaskContext
    log: ContextAdapter
    started: float
    deadline: float | None
    execution: Execution | None = None
    executing: bool = True  # the handler runs and the worker waits for it
    abandoned: bool = False  # the worker stopped waiting (time limit, shutdown)
    timed_out: bool = False
    released: bool = False  # given back unfinished at shutdown
    interrupted: bool = False  # an async handler was cancelled already
    recording: bool = False  # the run loop is writing its outcome right now
    outcome: Outcome | None = None

    @property
    def lease(self) -> Lease:
        return self.task.lease

    @property
    def task_id(self) -> int:
        return self.task.task_id
