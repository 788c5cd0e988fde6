"""Handler log records that also land in ``task_logs``.

A handler's ``ctx.logger`` is a LoggerAdapter: its records go to Python logging as usual (with
the task's id, type and worker id attached) and, at ``TASK_LOG_LEVEL_DEFAULT`` and above,
into a buffer that the worker writes to ``task_logs`` in batches: before it records the
task's outcome, and on each lease-renewal tick for long tasks. A handler never waits for the
database to log.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections import deque
from collections.abc import Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

from queue_core.clock import Clock, utcnow
from queue_core.repositories import log_entry
from workers.defaults import TASK_LOG_BUFFER_MAX

if TYPE_CHECKING:
    _Adapter = logging.LoggerAdapter[logging.Logger]
else:  # LoggerAdapter is subscriptable at run time only from Python 3.11
    _Adapter = logging.LoggerAdapter


class ContextAdapter(_Adapter):
    """A LoggerAdapter whose context fields merge with a call's own ``extra``."""

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        extra = dict(self.extra or {})
        extra.update(kwargs.get("extra") or {})
        kwargs["extra"] = extra
        return msg, kwargs


class TaskLogBuffer:
    """Entries for ``task_logs`` waiting to be written; thread-safe and bounded."""

    def __init__(self, limit: int = TASK_LOG_BUFFER_MAX) -> None:
        self._entries: deque[dict[str, Any]] = deque()
        self._limit = limit
        self._lock = threading.Lock()
        self.dropped = 0

    def add(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._entries.append(entry)
            while len(self._entries) > self._limit:
                self._entries.popleft()
                self.dropped += 1

    def take(self) -> list[dict[str, Any]]:
        with self._lock:
            entries = list(self._entries)
            self._entries.clear()
        return entries

    def put_back(self, entries: list[dict[str, Any]]) -> None:
        """Return entries a failed write could not store, ahead of newer ones."""
        with self._lock:
            self._entries.extendleft(reversed(entries))
            while len(self._entries) > self._limit:
                self._entries.popleft()
                self.dropped += 1

    def __len__(self) -> int:
        return len(self._entries)


def render_message(msg: Any, args: Any) -> str:
    """The message as logging would render it, never raising."""
    text = str(msg)
    if args:
        try:
            text = text % args
        except (TypeError, ValueError, KeyError):
            text = f"{text} {args!r}"
    return text


class TaskLogger(ContextAdapter):
    """``ctx.logger``: logs to Python logging and, from ``record_level`` up, to task_logs."""

    def __init__(
        self,
        logger: logging.Logger,
        extra: Mapping[str, Any],
        *,
        buffer: TaskLogBuffer,
        task_id: int,
        record_level: int,
        clock: Clock = utcnow,
    ) -> None:
        super().__init__(logger, extra)
        self._buffer = buffer
        self._task_id = task_id
        self._record_level = record_level
        self._clock = clock

    def log(self, level: int, msg: Any, *args: Any, **kwargs: Any) -> None:
        if level >= self._record_level:
            details: dict[str, Any] = {
                "source": "handler",
                "worker_id": (self.extra or {}).get("worker_id"),
                "attempt": (self.extra or {}).get("attempt"),
            }
            exc_info = kwargs.get("exc_info")
            if exc_info:
                error = exc_info if isinstance(exc_info, BaseException) else None
                if isinstance(exc_info, tuple):
                    error = exc_info[1]
                elif exc_info is True:
                    error = sys.exc_info()[1]
                if error is not None:
                    details["error"] = f"{type(error).__name__}: {error}"
            self._buffer.add(
                log_entry(
                    self._task_id,
                    render_message(msg, args),
                    self._clock(),
                    level=logging.getLevelName(level),
                    **details,
                )
            )
        super().log(level, msg, *args, **kwargs)
