"""Logging: the JSON formatter, context on every record, handler records into task_logs."""

from __future__ import annotations

import io
import json
import logging

from queue_core.jsonlog import JsonFormatter
from queue_core.repositories import log_entry
from workers.logs import ContextFilter, configure_logging
from workers.tasklog import ContextAdapter, TaskLogBuffer, TaskLogger, render_message


def _record(**extra: object) -> logging.LogRecord:
    record = logging.LogRecord("prismq.test", logging.WARNING, __file__, 1, "hi %s", ("x",), None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_json_formatter_writes_one_object_with_extra_fields() -> None:
    line = JsonFormatter(static_fields={"service": "w"}).format(
        _record(worker_id="w1", task_id=5, task_type=None, odd=object())
    )
    doc = json.loads(line)
    assert doc["message"] == "hi x"
    assert doc["level"] == "WARNING"
    assert doc["logger"] == "prismq.test"
    assert (doc["worker_id"], doc["task_id"], doc["service"]) == ("w1", 5, "w")
    assert "task_type" not in doc  # None is left out
    assert doc["odd"].startswith("<object")
    assert doc["ts"].endswith("+00:00")


def test_json_formatter_keeps_tracebacks() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record = logging.LogRecord("n", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    record.stack_info = "Stack (most recent call last):\n  here"
    doc = json.loads(JsonFormatter().format(record))
    assert "ValueError: boom" in doc["exc_info"]
    assert "here" in doc["stack_info"]


def test_context_filter_renders_the_fields_a_record_has() -> None:
    record = _record(worker_id="w1", task_id=3, task_type="t.x")
    ContextFilter().filter(record)
    assert getattr(record, "context", None) == " [worker=w1 task=3 type=t.x]"
    bare = _record()
    ContextFilter().filter(bare)
    assert getattr(bare, "context", None) == ""


def test_configure_logging_text_and_json() -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        stream = io.StringIO()
        configure_logging("json", "debug", stream=stream)
        ContextAdapter(logging.getLogger("prismq.queue.worker"), {"worker_id": "w9"}).info("up")
        assert json.loads(stream.getvalue().splitlines()[-1])["worker_id"] == "w9"
        assert logging.getLogger("sqlalchemy").level == logging.WARNING
        stream = io.StringIO()
        configure_logging("text", "INFO", stream=stream)
        ContextAdapter(logging.getLogger("prismq.queue.worker"), {"worker_id": "w9"}).info("up")
        assert "[worker=w9]: up" in stream.getvalue()
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])


def test_adapter_merges_call_extra() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("prismq.test.adapter")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.propagate = False
    try:
        ContextAdapter(logger, {"worker_id": "w"}).warning("m", extra={"task_id": 1})
    finally:
        logger.removeHandler(handler)
    doc = json.loads(stream.getvalue())
    assert (doc["worker_id"], doc["task_id"]) == ("w", 1)


def test_task_logger_buffers_records_at_or_above_its_level() -> None:
    buffer = TaskLogBuffer()
    logger = TaskLogger(
        logging.getLogger("prismq.queue.task"),
        {"worker_id": "w", "task_id": 4, "attempt": 1},
        buffer=buffer,
        task_id=4,
        record_level=logging.INFO,
    )
    logger.debug("skipped")
    logger.info("n=%d", 3)
    try:
        raise KeyError("k")
    except KeyError:
        logger.exception("caught")
    logger.error("with error", exc_info=ValueError("v"))
    logger.error("with tuple", exc_info=(ValueError, ValueError("t"), None))
    entries = buffer.take()
    assert [e["message"] for e in entries] == ["n=3", "caught", "with error", "with tuple"]
    assert entries[1]["level"] == "ERROR"
    assert entries[1]["details"]["error"] == "KeyError: 'k'"
    assert entries[2]["details"]["error"] == "ValueError: v"
    assert entries[0]["details"] == {"source": "handler", "worker_id": "w", "attempt": 1}
    assert len(buffer) == 0


def test_task_log_buffer_is_bounded_and_keeps_order_on_put_back() -> None:
    buffer = TaskLogBuffer(limit=3)
    from datetime import datetime, timezone

    now = datetime.now(timezone.utc)
    for i in range(5):
        buffer.add(log_entry(1, f"m{i}", now))
    assert buffer.dropped == 2
    taken = buffer.take()
    buffer.add(log_entry(1, "new", now))
    buffer.put_back(taken)
    assert [e["message"] for e in buffer.take()] == ["m3", "m4", "new"]
    assert buffer.dropped == 3


def test_render_message_never_raises() -> None:
    assert render_message("a %s", ("b",)) == "a b"
    assert render_message("a %d", ("b",)) == "a %d ('b',)"
    assert render_message(42, ()) == "42"
