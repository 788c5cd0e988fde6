"""The no-op handler prismq-queue's benchmark workers run: ``--import benchmarks.handlers``."""

from __future__ import annotations

from typing import Any

from benchmarks.prismq import TASK_TYPE
from benchmarks.records import task_body
from workers import task


@task(TASK_TYPE)
def noop(payload: dict[str, Any]) -> None:
    task_body(payload["id"], payload["t"])
