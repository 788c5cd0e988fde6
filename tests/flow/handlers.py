"""Handlers of the flow-control process tests (``--import tests.flow.handlers``).

Each run appends one JSON line with its start and end (``time.time()``, one host) to
``$PRISMQ_TEST_RECORD_DIR/<pid>.jsonl`` (tests/workers/handlers.py writes them).
"""

from __future__ import annotations

import time
from typing import Any

from tests.workers.handlers import record
from workers import TaskContext, task


@task("flow.limited")
def limited(payload: dict[str, Any], ctx: TaskContext) -> None:
    started = time.time()
    time.sleep(float(payload.get("sleep", 0.05)))
    record("span", ctx, start=started, end=time.time())


@task("flow.free")
def free(payload: dict[str, Any], ctx: TaskContext) -> None:
    record("span", ctx, start=time.time(), end=time.time())


@task("flow.tick")
def tick(payload: dict[str, Any], ctx: TaskContext) -> None:
    record("tick", ctx)


@task("flow.daily", cron="0 6 * * *", timezone="Europe/Prague")
def daily(payload: dict[str, Any]) -> None:
    return None
