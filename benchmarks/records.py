"""Payloads, the no-op task body that records each execution, and the statistics.

Every system under test runs the same body, :func:`task_body`. It appends one line
``id t_enqueue t_start t_end`` to a file of its own process with an unbuffered ``O_APPEND``
write, exactly like the peers' ``bench.common.task_body``. Completions, lost tasks and
duplicate executions are counted from those files, never from what a queue reports.
Timestamps are ``time.monotonic()`` (system-wide on Linux, macOS and Windows), so lines
written by different processes compare.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

REC_DIR_ENV = "PRISMQ_BENCH_REC_DIR"
REC_PREFIX = "rec-"

PAD = "x" * 60
"""The payload is about 100 bytes of JSON: ``{"id": n, "t": <enqueue time>, "pad": PAD}``."""


def make_payload(i: int, t: float = 0.0) -> dict[str, Any]:
    return {"id": i, "t": t, "pad": PAD}


_fd: int | None = None
_fd_pid: int | None = None


def _record_fd() -> int:
    global _fd, _fd_pid
    pid = os.getpid()
    if _fd is None or _fd_pid != pid:
        path = Path(os.environ[REC_DIR_ENV]) / f"{REC_PREFIX}{pid}.txt"
        _fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        _fd_pid = pid
    return _fd


def task_body(task_id: Any, t_enqueue: Any) -> None:
    """The no-op task every system executes: one recorded line per execution."""
    t0 = time.monotonic()
    fd = _record_fd()
    os.write(fd, b"%d %.9f %.9f %.9f\n" % (int(task_id), float(t_enqueue), t0, time.monotonic()))


Record = tuple[int, float, float, float]


def read_records(rec_dir: Path) -> list[Record]:
    """Every recorded execution ``(id, t_enqueue, t_start, t_end)`` in ``rec_dir``."""
    out: list[Record] = []
    for path in sorted(rec_dir.glob(f"{REC_PREFIX}*.txt")):
        with path.open("rb") as f:
            for line in f:
                parts = line.split()
                if len(parts) == 4:
                    out.append((int(parts[0]), float(parts[1]), float(parts[2]), float(parts[3])))
    return out


def count_unique(rec_dir: Path, lo: int, hi: int) -> int:
    """How many distinct ids in ``[lo, hi)`` have run: a cheap progress check."""
    seen: set[int] = set()
    for path in rec_dir.glob(f"{REC_PREFIX}*.txt"):
        with path.open("rb") as f:
            for line in f:
                space = line.find(b" ")
                if space > 0:
                    i = int(line[:space])
                    if lo <= i < hi:
                        seen.add(i)
    return len(seen)


def lines_per_file(rec_dir: Path) -> list[int]:
    counts = []
    for path in rec_dir.glob(f"{REC_PREFIX}*.txt"):
        with path.open("rb") as f:
            counts.append(sum(1 for _ in f))
    return sorted(counts)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (the peers' definition), q in 0..100."""
    if not values:
        return float("nan")
    s = sorted(values)
    if len(s) == 1:
        return s[0]
    k = (len(s) - 1) * q / 100.0
    f = int(k)
    c = min(f + 1, len(s) - 1)
    return s[f] + (s[c] - s[f]) * (k - f)


def median(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


QUANTILES = (*range(0, 100), 99.5, 99.9, 100)
"""Where a latency distribution is sampled for the JSON and the CDF plots."""


def quantiles(values: Sequence[float]) -> list[float]:
    s = sorted(values)
    return [round(percentile(s, q), 6) for q in QUANTILES] if s else []
