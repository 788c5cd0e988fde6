"""Handlers the scale-out test bed's workers run (``--import benchmarks.scaleout_handlers``).

Each execution appends one JSON line to ``$PRISMQ_SCALEOUT_RECORDS/<pid>.jsonl`` when that
variable is set: task id, attempt, worker, wall-clock start and end. The bed counts
executions per task from these files (duplicates) and enqueue-to-start latency.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from workers import TaskContext, task

RECORDS_ENV = "PRISMQ_SCALEOUT_RECORDS"
_records_dir = os.environ.get(RECORDS_ENV)
_file: Any = None


def _record(ctx: TaskContext, started: float, **extra: Any) -> None:
    global _file
    if not _records_dir:
        return
    if _file is None:
        _file = (Path(_records_dir) / f"{os.getpid()}.jsonl").open("a", buffering=1)
    line = {"task": ctx.task_id, "attempt": ctx.attempt, "worker": ctx.worker_id}
    _file.write(json.dumps({**line, "start": started, "end": time.time(), **extra}) + "\n")


@task("scaleout.noop")
def noop(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    started = time.time()
    _record(ctx, started)
    return {"worker": ctx.worker_id, "attempt": ctx.attempt}


@task("scaleout.sleep")
def sleep(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    started = time.time()
    time.sleep(float(payload.get("seconds", 0.1)))
    _record(ctx, started)
    return {"worker": ctx.worker_id, "attempt": ctx.attempt}
