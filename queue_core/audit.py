"""The one task_logs writer: every row the queue writes goes through :class:`TaskLogWriter`.

Rows are built with :func:`log_entry` and written, all the rows of a transaction at once, by
the dialect's one multi-row INSERT on the transaction's DBAPI cursor. The writer applies
``PRISMQ_QUEUE_AUDIT`` (CONTRACT §3): with ``failures``, the routine transitions (enqueued,
leased, completed, released, lease renewals) are not written; retries, failures,
cancellations, recoveries, re-queues and the handlers' own records always are.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from queue_core.dialects import Dialect, LogRow
from queue_core.settings import AuditMode

# The events ``failures`` leaves out: the ones every healthy task goes through.
ROUTINE_EVENTS = frozenset({"enqueued", "leased", "completed", "released", "renewed"})


def log_entry(
    task_id: int,
    message: str,
    now: datetime,
    *,
    level: str = "INFO",
    **details: Any,
) -> dict[str, Any]:
    """One task_logs row; ``details`` keeps only the keys that have a value."""
    return {
        "task_id": task_id,
        "at_utc": now,
        "level": level,
        "message": message,
        "details": {key: value for key, value in details.items() if value is not None} or None,
    }


def is_routine(entry: dict[str, Any]) -> bool:
    details = entry.get("details")
    return details is not None and details.get("event") in ROUTINE_EVENTS


class TaskLogWriter:
    def __init__(self, dialect: Dialect, audit: AuditMode) -> None:
        self.dialect = dialect
        self.audit = audit

    @property
    def routine(self) -> bool:
        """True when routine transitions are written (``full``)."""
        return self.audit == "full"

    def keep(self, entries: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """The entries the audit mode writes."""
        if self.routine:
            return list(entries)
        return [entry for entry in entries if not is_routine(entry)]

    def write(self, cursor: Any, entries: Sequence[dict[str, Any]]) -> None:
        """Write ``entries`` (built with :func:`log_entry`) in the cursor's transaction."""
        rows = [
            LogRow(e["task_id"], e["at_utc"], e["level"], e["message"], e["details"])
            for e in self.keep(entries)
        ]
        if rows:
            self.dialect.insert_logs(cursor, rows)
