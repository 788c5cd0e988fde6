"""Built-in demo handlers, served by ``prismq-queue up`` and ``worker --import workers.demo``.

- ``demo.echo``: returns ``{"echo": payload}``.
- ``demo.sleep``: sleeps ``payload["seconds"]`` (default 1), waking early when the task is
  cancelled or its lease is lost; returns how long it slept.
- ``demo.fail``: raises; with ``{"permanent": true}`` it raises PermanentError (no retries).
"""

from __future__ import annotations

import time
from typing import Any

from workers import PermanentError, TaskContext, task


@task("demo.echo")
def echo(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    return {"echo": payload}


@task("demo.sleep")
def sleep(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    seconds = float(payload.get("seconds", 1.0))
    started = time.monotonic()
    finished = ctx.sleep(seconds)
    slept = round(time.monotonic() - started, 3)
    if not finished:
        ctx.logger.info("stopped early after %.3f s", slept)
    return {"slept": slept, "finished": finished}


@task("demo.fail")
def fail(payload: dict[str, Any], ctx: TaskContext) -> None:
    message = str(payload.get("message", "demo.fail failed on purpose"))
    if payload.get("permanent"):
        raise PermanentError(message)
    raise RuntimeError(message)
