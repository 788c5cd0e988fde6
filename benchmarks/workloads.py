"""The four workloads of ``../shared/peers/README.md``, run once for one system.

``python -m benchmarks.workloads SYSTEM W1|W2|W3|W4 --outdir DIR [--nproc N] [--variant V]``
runs in a fresh process (the runner starts one per job) and prints its result as JSON on the
last line of stdout.

* **W1** single enqueue: 10,000 calls, one task per call and per transaction, each timed with
  ``perf_counter_ns``; 100 untimed warm-up calls first. Payload dicts are built before timing;
  the queue's own validation and serialisation are timed.
* **W2** batch enqueue: 100,000 tasks in batches of 1,000 (plus one untimed warm-up batch).
* **W3** drain: 10,000 tasks are pre-loaded (untimed); then ``nproc`` worker processes drain
  them. Throughput = unique tasks / (last ``t_end`` - first ``t_start``). Once every id has run,
  the job waits ``--grace`` s more for late duplicates, stops the workers with SIGTERM, and
  counts lost ids and extra executions from the record files.
* **W4** latency: one warmed-up worker; one task every 10 ms for 5 s on an absolute schedule.
  Latency = the worker's ``t_start`` - the producer's timestamp taken just before enqueue.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import IO, Any

from benchmarks.loop import BUSY_LINE_PREFIX
from benchmarks.records import (
    REC_DIR_ENV,
    count_unique,
    lines_per_file,
    make_payload,
    percentile,
    quantiles,
    read_records,
)
from benchmarks.systems import DATA_DIR_ENV, System, get_system

ROOT = Path(__file__).resolve().parent.parent
WARMUP_W1 = 100

# The peers' patterns (any of them makes a worker-log line an "error line"), and ours for
# SQLITE_BUSY in particular, counted on their own.
ERROR_PATTERNS = (
    b"database is locked",
    b"OperationalError",
    b"Traceback",
    b"ERROR",
    b"Error",
    b"busy",
)
BUSY_PATTERN = re.compile(rb"database is locked|database is busy|SQLITE_BUSY", re.IGNORECASE)


class Terminated(Exception):
    pass


def _on_term(*_: Any) -> None:
    raise Terminated()


# --- worker processes ---

Worker = tuple[subprocess.Popen[bytes], IO[bytes]]


def worker_env(outdir: Path) -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env[REC_DIR_ENV] = str(outdir)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def start_workers(system: System, nproc: int, variant: str, outdir: Path) -> list[Worker]:
    env = worker_env(outdir)
    procs: list[Worker] = []
    for k, argv in enumerate(system.worker_commands(nproc, variant)):
        log = (outdir / f"worker-{k}.log").open("wb")
        # A process group of its own: stopping it reaches anything the worker forked (huey).
        if sys.platform == "win32":
            p = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                creationflags=subprocess.CREATE_NEW_PROCESS_GROUP,  # type: ignore[attr-defined]
            )
        else:
            p = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        procs.append((p, log))
    return procs


def _signal_group(p: subprocess.Popen[bytes], kill: bool) -> None:
    try:
        if sys.platform == "win32":
            if kill:
                p.kill()
            else:
                p.send_signal(signal.CTRL_BREAK_EVENT)  # type: ignore[attr-defined]
        else:
            os.killpg(p.pid, signal.SIGKILL if kill else signal.SIGTERM)
    except (ProcessLookupError, PermissionError, OSError):
        pass


_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def group_cpu_seconds(procs: list[Worker]) -> float | None:
    """User + system CPU of every process in the workers' process groups (Linux /proc), or
    None where /proc is missing. A worker is its group's leader (``start_new_session``), so
    this counts the worker, its threads, and anything it forked."""
    groups = {p.pid for p, _ in procs}
    proc_dir = Path("/proc")
    if not proc_dir.is_dir():
        return None
    total = 0
    for entry in proc_dir.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        # fields[0] is the state (field 3 of proc(5)): pgrp is field 5, utime/stime 14/15
        if int(fields[2]) in groups:
            total += int(fields[11]) + int(fields[12])
    return total / _TICKS


def stop_workers(procs: list[Worker], grace: float = 10.0) -> list[int | None]:
    """SIGTERM each worker's group, wait up to ``grace`` s, then SIGKILL what is left."""
    for p, _ in procs:
        if p.poll() is None:
            _signal_group(p, kill=False)
    deadline = time.monotonic() + grace
    for p, log in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(max(0.1, deadline - time.monotonic()))
        _signal_group(p, kill=True)  # anything still in the group is ours
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(5)
        log.close()
    return [p.returncode for p, _ in procs]


def scan_logs(outdir: Path) -> dict[str, Any]:
    """Error-looking lines in the worker logs, SQLITE_BUSY lines, and the loops' own stats."""
    hits: dict[str, int] = {}
    busy_lines = 0
    samples: list[str] = []
    for path in sorted(outdir.glob("worker-*.log")):
        with path.open("rb") as f:
            for line in f:
                if BUSY_PATTERN.search(line):
                    busy_lines += 1
                if line.startswith(BUSY_LINE_PREFIX.encode()):
                    # our loops: already counted in worker_stats.busy_errors
                    if len(samples) < 5:
                        samples.append(line.decode(errors="replace").strip()[:300])
                    continue
                for pattern in ERROR_PATTERNS:
                    if pattern in line:
                        hits[pattern.decode()] = hits.get(pattern.decode(), 0) + 1
                        if len(samples) < 5:
                            samples.append(line.decode(errors="replace").strip()[:300])
                        break
    stats: dict[str, int] = {}
    for path in sorted(outdir.glob("stats-*.json")):
        for key, value in json.loads(path.read_text()).items():
            stats[key] = stats.get(key, 0) + value
    return {
        "log_error_lines": hits,
        "log_error_samples": samples,
        "busy_lines": busy_lines,
        "worker_stats": stats,
    }


# --- the workloads ---


def w1(system: System, a: argparse.Namespace) -> dict[str, Any]:
    n = a.n_w1
    payloads = [make_payload(i) for i in range(n)]
    warm = [make_payload(10_000_000 + i) for i in range(WARMUP_W1)]
    system.reset()
    system.open_producer()
    try:
        for p in warm:
            system.enqueue(p)
        lat = [0] * n
        pc = time.perf_counter_ns
        enqueue = system.enqueue
        t0 = time.perf_counter()
        for i in range(n):
            s = pc()
            enqueue(payloads[i])
            lat[i] = pc() - s
        dt = time.perf_counter() - t0
    finally:
        system.close_producer()
    lat_ms = [x / 1e6 for x in lat]
    return {
        "tasks": n,
        "seconds": dt,
        "tasks_per_s": n / dt,
        "p50_ms": percentile(lat_ms, 50),
        "p99_ms": percentile(lat_ms, 99),
        "max_ms": max(lat_ms),
        "latency_quantiles_ms": quantiles(lat_ms),
    }


def w2(system: System, a: argparse.Namespace) -> dict[str, Any]:
    if not system.SUPPORTS_BATCH:
        return {"na": True, "reason": system.BATCH_NOTE}
    n, b = a.n_w2, a.batch
    batches = [[make_payload(k + j) for j in range(b)] for k in range(0, n, b)]
    system.reset()
    system.open_producer()
    try:
        system.enqueue_batch([make_payload(10_000_000 + j) for j in range(b)])  # warm-up
        lat = []
        t0 = time.perf_counter()
        for batch in batches:
            s = time.perf_counter()
            system.enqueue_batch(batch)
            lat.append((time.perf_counter() - s) * 1000)
        dt = time.perf_counter() - t0
    finally:
        system.close_producer()
    return {
        "tasks": n,
        "batch": b,
        "seconds": dt,
        "tasks_per_s": n / dt,
        "batch_p50_ms": percentile(lat, 50),
        "batch_p99_ms": percentile(lat, 99),
        "note": system.BATCH_NOTE,
    }


def _correctness(recs: list[tuple[int, float, float, float]], n: int) -> dict[str, Any]:
    counts: dict[int, int] = {}
    for r in recs:
        counts[r[0]] = counts.get(r[0], 0) + 1
    unique = len(counts)
    return {
        "executions": len(recs),
        "unique": unique,
        "lost": n - unique,
        "duplicated_ids": sum(1 for c in counts.values() if c > 1),
        "extra_executions": len(recs) - unique,
    }


def w3(system: System, a: argparse.Namespace, outdir: Path) -> dict[str, Any]:
    n = a.n_w3
    system.reset()
    system.open_producer()
    t_load = time.perf_counter()
    try:
        system.preload([make_payload(i) for i in range(n)])
    finally:
        system.close_producer()
    t_load = time.perf_counter() - t_load
    counters_before = system.db_counters()
    procs = start_workers(system, a.nproc, a.variant, outdir)
    t_start = time.monotonic()
    last_progress, last_unique = t_start, -1
    status = "complete"
    # Worker CPU from the first task seen to the last: startup (imports, connecting) is left
    # out, so the figure is the cost per task in steady state.
    cpu_first: tuple[float, int] | None = None
    cpu_done: float | None = None
    try:
        while True:
            time.sleep(0.2)
            unique = count_unique(outdir, 0, n)
            now = time.monotonic()
            if cpu_first is None and unique > 0:
                cpu = group_cpu_seconds(procs)
                cpu_first = (cpu, unique) if cpu is not None else None
            if unique != last_unique:
                last_unique, last_progress = unique, now
            if unique >= n:
                cpu_done = group_cpu_seconds(procs)
                time.sleep(a.grace)  # let late duplicates show up
                break
            if now - last_progress > a.stall_timeout:
                status = f"stalled: no new task for {a.stall_timeout}s"
                break
            if now - t_start > a.drain_timeout:
                status = f"timeout after {a.drain_timeout}s"
                break
            if all(p.poll() is not None for p, _ in procs):
                status = "all workers exited"
                break
    finally:
        t_stop = time.monotonic()
        rcs = stop_workers(procs)
        stop_s = time.monotonic() - t_stop
    counters_after = None
    if counters_before is not None:
        time.sleep(0.5)  # the workers' server backends flush their statistics as they exit
        counters_after = system.db_counters()
    recs = [r for r in read_records(outdir) if 0 <= r[0] < n]
    res: dict[str, Any] = {
        "stop_s": stop_s,
        "tasks": n,
        "nproc": a.nproc,
        "variant": a.variant,
        "status": status,
        "preload_s": t_load,
        **_correctness(recs, n),
        "worker_rcs": rcs,
        "worker_note": system.worker_note(a.nproc, a.variant),
    }
    if recs:
        first = min(r[2] for r in recs)
        last = max(r[3] for r in recs)
        res["seconds"] = last - first
        res["tasks_per_s"] = res["unique"] / (last - first) if last > first else None
        res["startup_s"] = first - t_start  # spawn, import, connect: until the first task
        res["executions_by_file"] = lines_per_file(outdir)
    if cpu_first is not None and cpu_done is not None and n > cpu_first[1]:
        res["cpu_us_per_task"] = (cpu_done - cpu_first[0]) / (n - cpu_first[1]) * 1e6
    if counters_before is not None and counters_after is not None:
        # The whole job: startup, drain and shutdown of the workers, per task drained.
        res["db_per_task"] = {
            k: (counters_after[k] - counters_before[k]) / n
            for k in counters_after
            if k in counters_before
        }
    res.update(scan_logs(outdir))
    res.update(system.verify(n))
    return res


def w4(system: System, a: argparse.Namespace, outdir: Path) -> dict[str, Any]:
    n = round(a.w4_seconds / a.w4_interval)
    system.reset()
    system.open_producer()
    procs = start_workers(system, 1, a.variant, outdir)
    status = "complete"
    enqueue_ms: list[float] = []
    try:
        # a warm-up task: the worker is up and connected before measuring
        system.enqueue(make_payload(-1, time.monotonic()))
        deadline = time.monotonic() + 60
        while count_unique(outdir, -1, 0) == 0:
            if time.monotonic() > deadline or all(p.poll() is not None for p, _ in procs):
                raise RuntimeError("the worker did not start: the warm-up task never ran")
            time.sleep(0.02)
        t_next = time.monotonic()
        for i in range(n):
            delay = t_next - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            t = time.monotonic()
            system.enqueue(make_payload(i, t))
            enqueue_ms.append((time.monotonic() - t) * 1000)
            t_next += a.w4_interval
        deadline = time.monotonic() + a.w4_wait
        while count_unique(outdir, 0, n) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
    finally:
        rcs = stop_workers(procs)
        system.close_producer()
    recs = [r for r in read_records(outdir) if 0 <= r[0] < n]
    first_start: dict[int, tuple[int, float, float, float]] = {}
    for r in recs:
        if r[0] not in first_start or r[2] < first_start[r[0]][2]:
            first_start[r[0]] = r
    lat = [(r[2] - r[1]) * 1000 for r in first_start.values()]
    res: dict[str, Any] = {
        "tasks": n,
        "interval_ms": a.w4_interval * 1000,
        "variant": a.variant,
        "status": status,
        **_correctness(recs, n),
        "p50_ms": percentile(lat, 50),
        "p99_ms": percentile(lat, 99),
        "max_ms": max(lat) if lat else None,
        "latency_quantiles_ms": quantiles(lat),
        "enqueue_p50_ms": percentile(enqueue_ms, 50),
        "worker_rcs": rcs,
        "worker_note": system.worker_note(1, a.variant),
    }
    res.update(scan_logs(outdir))
    return res


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.workloads")
    ap.add_argument("system")
    ap.add_argument("workload", choices=["W1", "W2", "W3", "W4"])
    ap.add_argument("--outdir", required=True, type=Path)
    ap.add_argument("--nproc", type=int, default=1)
    ap.add_argument("--variant", default="default")
    ap.add_argument("--n-w1", type=int, default=10_000)
    ap.add_argument("--n-w2", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=1_000)
    ap.add_argument("--n-w3", type=int, default=10_000)
    ap.add_argument("--w4-seconds", type=float, default=5.0)
    ap.add_argument("--w4-interval", type=float, default=0.010)
    ap.add_argument("--w4-wait", type=float, default=15.0)
    ap.add_argument("--grace", type=float, default=1.0)
    ap.add_argument("--stall-timeout", type=float, default=30.0)
    ap.add_argument("--drain-timeout", type=float, default=240.0)
    return ap


def run(argv: list[str]) -> dict[str, Any]:
    a = parser().parse_args(argv)
    a.outdir.mkdir(parents=True, exist_ok=True)
    if DATA_DIR_ENV not in os.environ:
        os.environ[DATA_DIR_ENV] = str(a.outdir)
    system = get_system(a.system)
    why_not = system.workload_unavailable(a.workload)
    if why_not:
        return {"ok": False, "skipped": True, "error": why_not}
    try:
        if a.workload == "W1":
            res = w1(system, a)
        elif a.workload == "W2":
            res = w2(system, a)
        elif a.workload == "W3":
            res = w3(system, a, a.outdir)
        else:
            res = w4(system, a, a.outdir)
        res["ok"] = True
    except (Exception, Terminated) as exc:
        res = {
            "ok": False,
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc()[-3000:],
        }
    return res


def main() -> None:
    signal.signal(signal.SIGTERM, _on_term)
    print(json.dumps(run(sys.argv[1:])))


if __name__ == "__main__":
    main()
