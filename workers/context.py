"""TaskContext: what a running handler can know about its task (CONTRACT §6)."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from workers.defaults import TASK_LOGGER

if TYPE_CHECKING:
    LoggerLike = logging.Logger | logging.LoggerAdapter[logging.Logger]
else:
    LoggerLike = Any


class TaskContext:
    """Handed to a handler that accepts a second argument.

    ``cancel_requested``, ``lease_lost`` and ``timed_out`` turn true while the handler runs;
    a long synchronous handler should look at ``should_stop`` (or sleep with :meth:`sleep`,
    which wakes early) and return. Async handlers are also cancelled outright.
    """

    def __init__(
        self,
        *,
        task_id: int,
        attempt: int = 1,
        worker_id: str = "",
        task_type: str = "",
        max_attempts: int = 1,
        timeout_seconds: float | None = None,
        logger: LoggerLike | None = None,
    ) -> None:
        self.task_id = task_id
        self.attempt = attempt
        self.worker_id = worker_id
        self.task_type = task_type
        self.max_attempts = max_attempts
        self.timeout_seconds = timeout_seconds
        self.logger: LoggerLike = logger if logger is not None else logging.getLogger(TASK_LOGGER)
        self._cancel_requested = False
        self._lease_lost = False
        self._timed_out = False
        self._stop = threading.Event()

    @property
    def cancel_requested(self) -> bool:
        """True once a user asked to cancel this task."""
        return self._cancel_requested

    @property
    def lease_lost(self) -> bool:
        """True once this worker no longer holds the task: its result will be discarded."""
        return self._lease_lost

    @property
    def timed_out(self) -> bool:
        """True once the task's time limit passed: the attempt has already failed."""
        return self._timed_out

    @property
    def should_stop(self) -> bool:
        """True when finishing the work is pointless: cancelled, lease lost or timed out."""
        return self._stop.is_set()

    @property
    def is_last_attempt(self) -> bool:
        return self.attempt >= self.max_attempts

    def sleep(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; wake early when the handler should stop.

        Returns True when the whole time passed, False when woken early.
        """
        return not self._stop.wait(max(0.0, seconds))

    # --- set by the worker runtime ---

    def _request_cancel(self) -> None:
        self._cancel_requested = True
        self._stop.set()

    def _lose_lease(self) -> None:
        self._lease_lost = True
        self._stop.set()

    def _time_out(self) -> None:
        self._timed_out = True
        self._stop.set()

    def __repr__(self) -> str:
        return (
            f"TaskContext(task_id={self.task_id}, type={self.task_type!r}, "
            f"attempt={self.attempt}, worker_id={self.worker_id!r})"
        )
