"""The hand-written polling worker loop of the raw baselines, persist-queue and litequeue.

The same loop as the peers' harness: claim one task, run the body, acknowledge it; sleep 1 ms
when the queue is empty. A busy/locked error is counted, reported on stderr and the failed
step retried (the body is never re-run).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from benchmarks.records import REC_DIR_ENV

POLL_S = 0.001
BUSY_LINE_PREFIX = "BENCH busy error"

Item = TypeVar("Item")


class StopFlag:
    def __init__(self) -> None:
        self.stop = False
        signal.signal(signal.SIGTERM, self._set)
        signal.signal(signal.SIGINT, self._set)

    def _set(self, *_: Any) -> None:
        self.stop = True


def write_stats(stats: dict[str, int]) -> None:
    rec_dir = os.environ.get(REC_DIR_ENV)
    if rec_dir:
        (Path(rec_dir) / f"stats-{os.getpid()}.json").write_text(json.dumps(stats))


def poll_loop(
    claim: Callable[[], Item | None],
    run: Callable[[Item], None],
    complete: Callable[[Item], None],
    is_busy_error: Callable[[BaseException], bool],
) -> None:
    flag = StopFlag()
    stats = {"claims": 0, "empty_polls": 0, "busy_errors": 0}

    def busy(step: str, exc: BaseException, t0: float) -> None:
        stats["busy_errors"] += 1
        print(
            f"{BUSY_LINE_PREFIX} in {step} after {time.monotonic() - t0:.3f}s: "
            f"{type(exc).__name__}: {exc}",
            file=sys.stderr,
            flush=True,
        )

    try:
        while not flag.stop:
            t0 = time.monotonic()
            try:
                item = claim()
            except Exception as exc:
                if is_busy_error(exc):
                    busy("claim", exc, t0)
                    continue
                raise
            if item is None:
                stats["empty_polls"] += 1
                time.sleep(POLL_S)
                continue
            stats["claims"] += 1
            run(item)
            while True:
                t0 = time.monotonic()
                try:
                    complete(item)
                    break
                except Exception as exc:
                    if is_busy_error(exc):
                        busy("ack", exc, t0)
                        continue
                    raise
    finally:
        write_stats(stats)


def sqlite_busy(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and (
        "locked" in str(exc) or "busy" in str(exc)
    )
