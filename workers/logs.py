"""Logging set-up for ``prismq-queue worker``: text or JSON, with the worker and task context.

The runtime logs through LoggerAdapters that attach ``worker_id`` and, for a task, its
``task_id`` and ``task_type`` to every record. :class:`ContextFilter` renders them for the
text format; the JSON format writes them as fields. Payloads are never logged.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

from queue_core.jsonlog import JsonFormatter

LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(context)s: %(message)s"
CONTEXT_FIELDS = (("worker", "worker_id"), ("task", "task_id"), ("type", "task_type"))

# SQLAlchemy logs every statement at INFO; a worker at --log-level INFO must not.
QUIET_LOGGERS = ("sqlalchemy", "alembic")


class ContextFilter(logging.Filter):
    """Adds ``record.context``: `` [worker=… task=… type=…]`` for the fields a record has."""

    def filter(self, record: logging.LogRecord) -> bool:
        parts = [
            f"{label}={value}"
            for label, attribute in CONTEXT_FIELDS
            if (value := getattr(record, attribute, None)) is not None
        ]
        record.context = f" [{' '.join(parts)}]" if parts else ""
        return True


class WorkerIdFilter(logging.Filter):
    """Gives every record of the process the worker's id, also records from loggers outside
    the runtime's adapters (maintenance, the database backends)."""

    def __init__(self, worker_id: str) -> None:
        super().__init__()
        self.worker_id = worker_id

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "worker_id", None) is None:
            record.worker_id = self.worker_id
        return True


def configure_logging(
    log_format: str = "text",
    level: str = "INFO",
    stream: TextIO | None = None,
    *,
    worker_id: str | None = None,
) -> logging.Handler:
    """Replace the root logger's handlers with one that writes to stderr in ``log_format``."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    if worker_id is not None:
        handler.addFilter(WorkerIdFilter(worker_id))  # before ContextFilter renders it
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.addFilter(ContextFilter())
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    return handler
