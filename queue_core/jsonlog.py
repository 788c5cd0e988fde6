"""A logging formatter that writes one JSON object per record, for log collectors.

Every attribute a record carries beyond the standard ones (``extra=``, a LoggerAdapter's
context such as ``worker_id`` and ``task_id``) becomes a field, so collectors can filter on
them without parsing the message. Fields whose value is None are left out.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

import orjson

# Attributes every LogRecord has; anything else on a record came from ``extra``.
STANDARD_RECORD_ATTRIBUTES = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()
    | {"message", "asctime", "taskName"}
)


def _fallback(value: Any) -> str:
    # orjson calls this for types it cannot encode; a log line must never fail to render.
    return repr(value)


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "message", ...extra fields, "exc_info"?}`` on one line."""

    def __init__(self, *, static_fields: dict[str, Any] | None = None) -> None:
        super().__init__()
        self._static = dict(static_fields or {})

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        document.update(self._static)
        for key, value in record.__dict__.items():
            if key in STANDARD_RECORD_ATTRIBUTES or key.startswith("_") or value is None:
                continue
            document[key] = value
        if record.exc_info:
            document["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            document["exc_info"] = record.exc_text
        if record.stack_info:
            document["stack_info"] = self.formatStack(record.stack_info)
        return orjson.dumps(document, default=_fallback, option=orjson.OPT_NON_STR_KEYS).decode()
