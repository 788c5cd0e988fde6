"""The worker's database back-off logs one throttled WARNING line, not a traceback per retry.

A full disk ("database or disk is full") reaches the worker as DatabaseUnavailable, like a
lock or an outage (issue 12 item 7): 1,702 ERROR lines with tracebacks in 25 s before.
"""

from __future__ import annotations

import logging

import pytest

from queue_core.errors import DatabaseUnavailable
from workers.defaults import DB_FAILURE_LOG_EVERY
from workers.health import DatabaseHealth
from workers.metrics import WorkerMetrics


def test_an_unavailable_database_logs_throttled_warnings(caplog: pytest.LogCaptureFixture) -> None:
    metrics = WorkerMetrics("w-health")
    log = logging.getLogger("prismq.queue.worker.test-health")
    health = DatabaseHealth(metrics, log)
    failures = DB_FAILURE_LOG_EVERY * 2 + 5
    with caplog.at_level(logging.DEBUG, logger=log.name):
        for _ in range(failures):
            health.failed("claim", DatabaseUnavailable("database or disk is full"))
    records = [r for r in caplog.records if r.name == log.name]
    assert [r.levelno for r in records] == [logging.WARNING] * 3  # failures 1, 10 and 20
    assert all(r.exc_info is None for r in records)
    assert "disk is full" in records[0].getMessage()
    assert health.failing
    counted = metrics.registry.get_sample_value(
        "prismq_worker_db_unavailable_retries_total", {"operation": "claim"}
    )
    assert counted == failures
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger=log.name):
        health.ok()
    assert [r.getMessage().split(" after")[0] for r in caplog.records] == [
        "database available again"
    ]
    assert not health.failing
