"""The mapping between queue task states and the old manager's run statuses, both ways.

A task waiting for a retry is back in ``queued`` with ``attempts`` > 0: for its run the
work is under way, so it maps to ``running``. The queue's ``leased`` is the run's
``running``; the terminal states keep their names.
"""

from __future__ import annotations

from queue_core.states import TaskStatus
from workers.integration.runs import RunStatus

_TASK_TO_RUN = {
    TaskStatus.LEASED: RunStatus.RUNNING,
    TaskStatus.COMPLETED: RunStatus.COMPLETED,
    TaskStatus.FAILED: RunStatus.FAILED,
    TaskStatus.CANCELLED: RunStatus.CANCELLED,
}

_RUN_TO_TASK = {
    RunStatus.QUEUED: TaskStatus.QUEUED,
    RunStatus.RUNNING: TaskStatus.LEASED,
    RunStatus.COMPLETED: TaskStatus.COMPLETED,
    RunStatus.FAILED: TaskStatus.FAILED,
    RunStatus.CANCELLED: TaskStatus.CANCELLED,
}


def run_status_for(status: TaskStatus | str, attempts: int = 0) -> RunStatus:
    """The run status a task in ``status`` (after ``attempts`` claims) shows."""
    status = TaskStatus(status)
    if status is TaskStatus.QUEUED:
        return RunStatus.RUNNING if attempts > 0 else RunStatus.QUEUED
    return _TASK_TO_RUN[status]


def task_status_for(status: RunStatus | str) -> TaskStatus:
    """The queue state that corresponds to a run status (``running`` is ``leased``)."""
    return _RUN_TO_TASK[RunStatus(status)]
