"""Handlers the worker tests run, in worker subprocesses (``--import tests.workers.handlers``)
and in-process.

Handlers that record write one JSON line per event to ``$PRISMQ_TEST_RECORD_DIR/<pid>.jsonl``,
so a test can count executions per task across processes, including killed ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from workers import PermanentError, TaskContext, task

RECORD_DIR_ENV = "PRISMQ_TEST_RECORD_DIR"
_lock = threading.Lock()


def record(event: str, ctx: TaskContext, *, directory: str | None = None, **fields: Any) -> None:
    directory = directory or os.environ.get(RECORD_DIR_ENV)
    if not directory:
        return
    line = {"event": event, "task_id": ctx.task_id, "attempt": ctx.attempt, "pid": os.getpid()}
    line.update(fields)
    with _lock, (Path(directory) / f"{os.getpid()}.jsonl").open("a", encoding="utf-8") as f:
        f.write(json.dumps(line) + "\n")
        f.flush()


def read_records(directory: Path) -> list[dict[str, Any]]:
    records = []
    for path in sorted(directory.glob("*.jsonl")):
        for text in path.read_text(encoding="utf-8").splitlines():
            if text.strip():
                with contextlib.suppress(json.JSONDecodeError):  # a line cut by SIGKILL
                    records.append(json.loads(text))
    return records


@task("t.noop")
def noop(payload: dict[str, Any]) -> None:
    return None


@task("t.record")
def record_run(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    record("run", ctx)
    seconds = float(payload.get("sleep", 0))
    if seconds:
        time.sleep(seconds)
    return {"n": payload.get("n")}


@task("t.crash_first")
def crash_first(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    record("run", ctx)
    if ctx.attempt == 1:
        ctx.sleep(60)  # the test kills the worker meanwhile
    return {"attempt": ctx.attempt}


@task("t.flaky")
def flaky(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    record("run", ctx)
    if ctx.attempt <= int(payload.get("fail_times", 1)):
        raise RuntimeError(f"flaky failure on attempt {ctx.attempt}")
    return {"attempt": ctx.attempt}


@task("t.permanent")
def permanent(payload: dict[str, Any]) -> None:
    raise PermanentError("this cannot work")


@task("t.sync_wait")
def sync_wait(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    record("start", ctx)
    finished = ctx.sleep(float(payload.get("seconds", 30)))
    record("end", ctx, finished=finished, cancel_requested=ctx.cancel_requested)
    return {"finished": finished}


@task("t.async_wait")
async def async_wait(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    record("start", ctx)
    try:
        await asyncio.sleep(float(payload.get("seconds", 30)))
    except asyncio.CancelledError:
        record("cancelled", ctx, cancel_requested=ctx.cancel_requested)
        raise
    record("end", ctx)
    return {"finished": True}


@task("t.hang")
def hang(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    # It outlives its test: note where to record its end before the next test moves the env.
    directory = os.environ.get(RECORD_DIR_ENV)
    record("start", ctx, directory=directory)
    time.sleep(float(payload.get("seconds", 2)))  # ignores the context on purpose
    record("end", ctx, directory=directory)
    return {"late": True}


@task("t.sleep")
def plain_sleep(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    record("start", ctx)
    time.sleep(float(payload.get("seconds", 1)))
    record("end", ctx)
    return {"slept": payload.get("seconds", 1)}


@task("t.bad_result")
def bad_result(payload: dict[str, Any]) -> Any:
    return {1, 2, 3}


@task("t.log")
def logs(payload: dict[str, Any], ctx: TaskContext) -> str:
    ctx.logger.info("hello %s", "world")
    ctx.logger.debug("not stored in task_logs")
    try:
        raise ValueError("inner")
    except ValueError:
        ctx.logger.exception("caught it")
    return "logged"


@task("t.echo_async")
async def echo_async(payload: dict[str, Any]) -> dict[str, Any]:
    await asyncio.sleep(0)
    return {"echo": payload}


@task("t.stamp")
def stamp(payload: dict[str, Any], ctx: TaskContext) -> None:
    record("stamp", ctx, at=time.time())


@task("t.thread")
def thread_name(payload: dict[str, Any]) -> dict[str, Any]:
    return {"thread": threading.current_thread().name}


@task("t.log_sleep")
def log_sleep(payload: dict[str, Any], ctx: TaskContext) -> str:
    record("start", ctx)
    ctx.logger.info("working")
    time.sleep(float(payload.get("seconds", 0.3)))
    return "slept"


@task("t.sleep_then_raise")
def sleep_then_raise(payload: dict[str, Any], ctx: TaskContext) -> None:
    record("start", ctx)
    time.sleep(float(payload.get("seconds", 0.6)))  # ignores the context on purpose
    raise RuntimeError("failed after the cancel")
