"""The handler of ``python -m benchmarks.held_transaction``: sleep for the job's work time."""

from __future__ import annotations

import os
import time
from typing import Any

from workers import task

HELD_TASK_TYPE = "bench.held"
WORK_MS_ENV = "PRISMQ_BENCH_WORK_MS"
_WORK_SECONDS = float(os.environ.get(WORK_MS_ENV, "1")) / 1000.0


@task(HELD_TASK_TYPE)
def work(payload: dict[str, Any]) -> None:
    time.sleep(_WORK_SECONDS)
