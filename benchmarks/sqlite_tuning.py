"""SQLite PRAGMA and concurrency study (issue 7, item 5): the evidence behind our SQLite settings.

Run from the repository root::

    python -m benchmarks.sqlite_tuning            # full study, 3 repetitions (about 10 minutes)
    python -m benchmarks.sqlite_tuning --quick    # smoke run, tiny sizes, 1 repetition

The full run writes ``benchmarks/results/sqlite_tuning.{json,md}`` and ``docs/img/tuning_*.png``;
``--quick`` writes to a temporary directory unless ``--out`` is given.
``docs/research/sqlite-tuning.md`` discusses the figures.

Experiments, each with every setting interleaved inside each repetition so that settings are
compared under the same machine load:

* ``synchronous``: NORMAL vs FULL, single-task enqueue and claim+complete, through the engine
  (``TaskRepository`` / ``LeaseRepository``) and through a plain ``sqlite3`` loop;
* ``crash``: a process enqueuing with our settings is killed (SIGKILL / TerminateProcess);
  every enqueue it had been told was committed must still be there;
* ``wal_autocheckpoint``: enqueue and claim+complete rates, commit tail latency, WAL size;
* ``cache_mmap``: ``cache_size`` and ``mmap_size`` on a large backlog, one and four processes;
* ``busy_timeout``: 0, 100 ms and 5 s with 4 and 16 processes claiming and completing;
* ``begin_mode``: plain ``sqlite3`` read-then-write claims under deferred ``BEGIN`` vs
  ``BEGIN IMMEDIATE``, 1 to 16 processes: the SQLITE_BUSY errors a busy timeout cannot cure;
* ``processes``: 1 to 16 engine processes claiming and completing (no-op and 1 ms tasks):
  throughput, p99, SQLITE_BUSY surfaced, and the time spent waiting for the write lock.

Processes are started with ``multiprocessing.get_context("spawn")`` once per run and reused.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import queue
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

import sqlalchemy
from sqlalchemy import Engine, event, text

from queue_core import migrate
from queue_core.database import Database
from queue_core.errors import DatabaseUnavailable
from queue_core.repositories import LeaseRepository, TaskRepository
from queue_core.schemas import TaskCreate
from queue_core.settings import (
    BATCH_MAX,
    SQLITE_BUSY_TIMEOUT_MS,
    QueueSettings,
    sqlite_url_for,
)

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "benchmarks" / "results"
IMG_DIR = ROOT / "docs" / "img"
RESULT_NAME = "sqlite_tuning"

TASK_TYPE = "bench.noop"
TYPES = [TASK_TYPE]
PAD = "x" * 60  # payload of about 100 bytes, as in ../shared/peers
LOCK_WAIT_THRESHOLD_S = 0.001  # SQLite's busy handler never sleeps less than 1 ms
JOB_TIMEOUT_S = 600.0
WAL_FRAME_HEADER = 24
MIB = 1024 * 1024

Json = dict[str, Any]


# --------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class Plan:
    reps: int
    pool_size: int
    sync_n: int
    sync_raw_n: int
    warmup: int
    checkpoint_n: int
    checkpoint_values: tuple[int, ...]
    backlog_n: int
    backlog_cycles: int
    backlog_stats_calls: int
    backlog_procs: int
    backlog_proc_cycles: int
    cache_settings: tuple[tuple[str, tuple[tuple[str, int], ...]], ...]
    busy_values: tuple[int, ...]
    busy_procs: tuple[int, ...]
    busy_n: int
    begin_procs: tuple[int, ...]
    begin_n: int
    scale_procs: tuple[int, ...]
    scale_bodies: tuple[str, ...]
    scale_n: Mapping[str, int]
    crash_kills: int
    crash_acks: tuple[int, int]  # kill after a random number of acknowledged enqueues in this range


CACHE_SETTINGS: tuple[tuple[str, tuple[tuple[str, int], ...]], ...] = (
    ("cache 2 MiB (SQLite default)", (("cache_size", -2000),)),
    ("cache 16 MiB (ours)", ()),
    ("cache 64 MiB", (("cache_size", -64 * 1024),)),
    ("cache 16 MiB + mmap 256 MiB", (("mmap_size", 256 * MIB),)),
    ("cache 2 MiB + mmap 256 MiB", (("cache_size", -2000), ("mmap_size", 256 * MIB))),
)

FULL_PLAN = Plan(
    reps=3,
    pool_size=16,
    sync_n=2000,
    sync_raw_n=5000,
    warmup=100,
    checkpoint_n=3000,
    checkpoint_values=(100, 1000, 10000, 0),
    backlog_n=100_000,
    backlog_cycles=1000,
    backlog_stats_calls=5,
    backlog_procs=4,
    backlog_proc_cycles=250,
    cache_settings=CACHE_SETTINGS,
    busy_values=(0, 100, 5000),
    busy_procs=(4, 16),
    busy_n=2000,
    begin_procs=(1, 2, 4, 8, 16),
    begin_n=4000,
    scale_procs=(1, 2, 4, 8, 16),
    scale_bodies=("noop", "sleep1ms"),
    scale_n={"noop": 3000, "sleep1ms": 2000},
    crash_kills=10,
    crash_acks=(100, 600),
)

QUICK_PLAN = Plan(
    reps=1,
    pool_size=2,
    sync_n=100,
    sync_raw_n=200,
    warmup=10,
    checkpoint_n=100,
    checkpoint_values=(100, 1000),
    backlog_n=1000,
    backlog_cycles=50,
    backlog_stats_calls=2,
    backlog_procs=2,
    backlog_proc_cycles=25,
    cache_settings=(CACHE_SETTINGS[1], CACHE_SETTINGS[3]),
    busy_values=(0, 5000),
    busy_procs=(2,),
    busy_n=100,
    begin_procs=(2,),
    begin_n=300,
    scale_procs=(1, 2),
    scale_bodies=("noop",),
    scale_n={"noop": 100, "sleep1ms": 100},
    crash_kills=1,
    crash_acks=(30, 80),
)


# --------------------------------------------------------------------------- statistics


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile, q in [0, 100]."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(values: Sequence[float]) -> Json:
    """Median of the repetitions, their range, and spread = (max - min) / median."""
    median = statistics.median(values)
    low, high = min(values), max(values)
    spread = (high - low) / median if median else 0.0
    return {"median": median, "min": low, "max": high, "spread": spread, "reps": list(values)}


def loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):  # Windows has no load average
        return None


def latency_metrics(prefix: str, ns: Sequence[int], count: int, wall: float) -> Json:
    ms = [x / 1e6 for x in ns]
    return {
        f"{prefix}_per_s": count / wall if wall > 0 else float("nan"),
        f"{prefix}_p50_ms": percentile(ms, 50),
        f"{prefix}_p99_ms": percentile(ms, 99),
        f"{prefix}_max_ms": max(ms) if ms else float("nan"),
    }


# --------------------------------------------------------------------------- databases


def payload(n: int) -> dict[str, Any]:
    return {"id": n, "t": time.monotonic(), "pad": PAD}


def task_specs(count: int, start: int = 0) -> list[TaskCreate]:
    return [TaskCreate(type=TASK_TYPE, payload=payload(start + i)) for i in range(count)]


def apply_pragmas(engine: Engine, pragmas: Mapping[str, int | str]) -> None:
    """Override PRAGMAs after the backend's own connect hook has set ours."""
    if not pragmas:
        return

    @event.listens_for(engine, "connect")
    def _override(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        for name, value in pragmas.items():
            dbapi_connection.execute(f"PRAGMA {name}={value}").fetchall()


def open_database(
    path: Path,
    pragmas: Mapping[str, int | str] | None = None,
    busy_ms: int = SQLITE_BUSY_TIMEOUT_MS,
) -> Database:
    db = Database(sqlite_url_for(path), QueueSettings(sqlite_busy_timeout_ms=busy_ms))
    apply_pragmas(db.engine, pragmas or {})
    return db


PRAGMAS_REPORTED = (
    "journal_mode",
    "synchronous",
    "busy_timeout",
    "cache_size",
    "mmap_size",
    "wal_autocheckpoint",
    "journal_size_limit",
    "temp_store",
    "page_size",
)


def effective_pragmas(db: Database) -> dict[str, Any]:
    with db.engine.connect() as conn:
        return {name: conn.exec_driver_sql(f"PRAGMA {name}").scalar() for name in PRAGMAS_REPORTED}


def remove_db(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


class Databases:
    """Migrated, optionally pre-loaded template files, copied for every measurement."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._templates: dict[tuple[str, int], Path] = {}
        self._serial = 0

    def _fresh_path(self, label: str) -> Path:
        self._serial += 1
        return self.workdir / f"{self._serial:04d}-{label}.db"

    def engine_copy(self, queued: int = 0) -> Path:
        return self._copy(self._template("engine", queued))

    def raw_copy(self, queued: int = 0) -> Path:
        return self._copy(self._template("raw", queued))

    def discard(self, path: Path) -> None:
        remove_db(path)

    def close(self) -> None:
        for path in self._templates.values():
            remove_db(path)

    def _copy(self, template: Path) -> Path:
        target = self._fresh_path("run")
        shutil.copyfile(template, target)
        return target

    def _template(self, kind: str, queued: int) -> Path:
        key = (kind, queued)
        if key not in self._templates:
            path = self.workdir / f"template-{kind}-{queued}.db"
            remove_db(path)
            if kind == "engine":
                _make_engine_template(path, queued)
            else:
                _make_raw_template(path, queued)
            self._templates[key] = path
        return self._templates[key]


def _make_engine_template(path: Path, queued: int) -> None:
    db = open_database(path)
    try:
        migrate.upgrade(db)
        tasks = TaskRepository(db)
        for start in range(0, queued, BATCH_MAX):
            tasks.enqueue_many(task_specs(min(BATCH_MAX, queued - start), start))
    finally:
        db.dispose()
    # Copy-ready: everything in the main file, whatever connection may still be open.
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    finally:
        conn.close()


RAW_SCHEMA = (
    """CREATE TABLE tasks(
         id INTEGER PRIMARY KEY,
         status TEXT NOT NULL DEFAULT 'queued',
         priority INTEGER NOT NULL DEFAULT 0,
         payload TEXT NOT NULL,
         lease_expires_at REAL)""",
    "CREATE INDEX tasks_queued ON tasks(priority, id) WHERE status = 'queued'",
)
RAW_INSERT = "INSERT INTO tasks(status, priority, payload) VALUES ('queued', 0, ?)"
RAW_SELECT_NEXT = (
    "SELECT id, payload FROM tasks WHERE status = 'queued' ORDER BY priority, id LIMIT 1"
)
RAW_TAKE = (
    "UPDATE tasks SET status = 'running', lease_expires_at = ? WHERE id = ? AND status = 'queued'"
)
RAW_CLAIM_ONE_STATEMENT = """UPDATE tasks SET status = 'running', lease_expires_at = ?
    WHERE id = (SELECT id FROM tasks WHERE status = 'queued' ORDER BY priority, id LIMIT 1)
    RETURNING id, payload"""
RAW_COMPLETE = "UPDATE tasks SET status = 'done', lease_expires_at = NULL WHERE id = ?"


def raw_connect(path: Path, synchronous: str = "NORMAL", busy_ms: int = 5000) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, timeout=busy_ms / 1000)
    conn.execute("PRAGMA journal_mode=WAL").fetchall()
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute(f"PRAGMA busy_timeout={busy_ms}")
    return conn


def _make_raw_template(path: Path, queued: int) -> None:
    conn = raw_connect(path)
    try:
        for statement in RAW_SCHEMA:
            conn.execute(statement)
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            RAW_INSERT, [(json.dumps(payload(i), separators=(",", ":")),) for i in range(queued)]
        )
        conn.execute("COMMIT")
    finally:
        conn.close()


def wal_size(path: Path) -> int:
    try:
        return os.path.getsize(f"{path}-wal")
    except OSError:
        return 0


# --------------------------------------------------------------------------- lock waits


class LockWaits:
    """Where a process meets the write lock, seen through ``sqlite3``'s trace callback on every
    connection of the engine (so both SQLAlchemy's path and the hot path's own DBAPI
    connection are seen). The callback fires when a statement starts to run.

    * ``durations``: from ``BEGIN IMMEDIATE`` starting to the next statement starting. The
      write lock is taken inside that BEGIN, so this is the time SQLite's busy handler slept
      while another connection held the lock, plus microseconds of locking and Python work.
      1 ms or more means the busy handler ran at least once (its shortest sleep is 1 ms).
    * ``holds``: from the first statement after BEGIN to COMMIT/ROLLBACK starting: the part of
      each write transaction during which every other writer waits (the COMMIT's own write of
      the WAL frames is left out).
    """

    def __init__(self, engine: Engine) -> None:
        self.durations: list[float] = []
        self.holds: list[float] = []
        self._begin_at: float | None = None
        self._holding_since: float | None = None
        event.listen(engine, "connect", self._on_connect)

    def _on_connect(self, dbapi_connection: sqlite3.Connection, _record: object) -> None:
        dbapi_connection.set_trace_callback(self._trace)

    def _trace(self, statement: str) -> None:
        now = time.perf_counter()
        head = statement.lstrip()[:15].upper()
        is_begin = head.startswith("BEGIN IMMEDIATE")
        if self._begin_at is not None:
            # The BEGIN before this statement is over: it got the lock, or it failed (then
            # this is the retry's BEGIN) after the same wait.
            self.durations.append(now - self._begin_at)
            self._begin_at = None
            if not is_begin:
                self._holding_since = now
        if is_begin:
            self._begin_at = now
        elif head.startswith(("COMMIT", "ROLLBACK", "END")) and self._holding_since is not None:
            self.holds.append(now - self._holding_since)
            self._holding_since = None

    def summary(self) -> Json:
        waits = [d for d in self.durations if d >= LOCK_WAIT_THRESHOLD_S]
        return {
            "begins": len(self.durations),
            "waits": len(waits),
            "wait_s": sum(waits),
            "begin_s": sum(self.durations),
            "max_wait_s": max(self.durations, default=0.0),
            "durations": self.durations,
            "hold_s": sum(self.holds),
            "holds": self.holds,
        }


# --------------------------------------------------------------------------- worker pool jobs

Runner = Callable[[], Json]


def _body(kind: str) -> Callable[[], None]:
    if kind == "noop":
        return lambda: None
    if kind == "sleep1ms":
        return lambda: time.sleep(0.001)
    raise ValueError(f"unknown task body {kind!r}")


def _retry(
    step: Callable[[], Any], errors: Counter[str], name: str, busy: Callable[[Exception], bool]
) -> Any:
    """Run a step until no SQLITE_BUSY surfaced to the caller interrupts it; count those."""
    for _ in range(1_000_000):
        try:
            return step()
        except Exception as exc:
            if not busy(exc):
                raise
            errors[name] += 1
    raise RuntimeError(f"{name}: SQLITE_BUSY a million times in a row")


def prepare_engine_drain(args: Json) -> Runner:
    """Claim one task and complete it, until the queue is empty or max_cycles is reached."""
    db = open_database(Path(args["path"]), args.get("pragmas"), args["busy_ms"])
    leases = LeaseRepository(db)
    waits = LockWaits(db.engine)
    body = _body(args.get("body", "noop"))
    worker_id = f"tuning-{args['index']}"

    def busy(exc: Exception) -> bool:
        # DatabaseUnavailable is the engine's translation; a driver error it let through
        # (e.g. from a connection being opened) counts as surfaced too.
        return isinstance(exc, DatabaseUnavailable) or db.dialect.is_unavailable(exc)

    max_cycles = args.get("max_cycles") or sys.maxsize

    def open_connection() -> None:
        with db.read() as conn:
            conn.execute(text("SELECT 1"))

    # Open the connections before the clock starts (with busy_timeout=0 even that can fail).
    _retry(open_connection, Counter(), "warm-up", busy)
    # The hot path's own connection too; the other processes are warming up at the same time.
    warm_up = partial(leases.claim, worker_id, ["tuning.warm-up.matches-nothing"])
    _retry(warm_up, Counter(), "warm-up", busy)
    waits.durations.clear()
    waits.holds.clear()

    def run() -> Json:
        errors: Counter[str] = Counter()
        latencies: list[int] = []
        done: list[int] = []
        lost = 0
        first = time.monotonic()
        try:
            while len(done) < max_cycles:
                t0 = time.perf_counter_ns()
                claimed = _retry(
                    lambda: leases.claim(worker_id, TYPES, limit=1), errors, "claim", busy
                )
                if not claimed:
                    break
                t1 = time.perf_counter_ns()
                body()
                t2 = time.perf_counter_ns()
                outcome = [(claimed[0].lease, None)]
                lost += len(
                    _retry(partial(leases.complete_many, outcome), errors, "complete", busy)
                )
                t3 = time.perf_counter_ns()
                latencies.append((t1 - t0) + (t3 - t2))
                done.append(claimed[0].task_id)
            last = time.monotonic()
        finally:
            db.dispose()
        return {
            "first": first,
            "last": last,
            "done": done,
            "latencies_ns": latencies,
            "errors": dict(errors),
            "lease_lost": lost,
            "lock": waits.summary(),
        }

    return run


def _error_name(exc: sqlite3.Error) -> str:
    return str(getattr(exc, "sqlite_errorname", None) or exc)


def prepare_raw_drain(args: Json) -> Runner:
    """Plain sqlite3 claims that read, then write (SELECT the next id, then UPDATE it), in a
    deferred BEGIN or a BEGIN IMMEDIATE transaction; the complete is a separate transaction."""
    conn = raw_connect(Path(args["path"]), args.get("synchronous", "NORMAL"), args["busy_ms"])
    begin = "BEGIN IMMEDIATE" if args["mode"] == "immediate" else "BEGIN"
    conn.execute("SELECT 1").fetchall()

    def transaction(work: Callable[[], Any], errors: Counter[str], step: str) -> Any:
        while True:
            try:
                conn.execute(begin)
                result = work()
                conn.execute("COMMIT")
                return result
            except sqlite3.OperationalError as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                message = str(exc)
                if "locked" not in message and "busy" not in message:
                    raise
                errors[f"{step}:{_error_name(exc)}"] += 1

    def claim() -> tuple[int, str] | None:
        row = conn.execute(RAW_SELECT_NEXT).fetchone()
        if row is None:
            return None
        taken = conn.execute(RAW_TAKE, (time.time() + 30.0, row[0])).rowcount
        if taken != 1:
            raise RuntimeError(f"task {row[0]} was taken by another process: snapshot broken")
        return (int(row[0]), str(row[1]))

    def run() -> Json:
        errors: Counter[str] = Counter()
        latencies: list[int] = []
        done: list[int] = []
        first = time.monotonic()
        try:
            while True:
                t0 = time.perf_counter_ns()
                row = transaction(claim, errors, "claim")
                if row is None:
                    break
                json.loads(row[1])
                transaction(partial(conn.execute, RAW_COMPLETE, (row[0],)), errors, "complete")
                latencies.append(time.perf_counter_ns() - t0)
                done.append(row[0])
            last = time.monotonic()
        finally:
            conn.close()
        return {
            "first": first,
            "last": last,
            "done": done,
            "latencies_ns": latencies,
            "errors": dict(errors),
        }

    return run


PREPARERS: dict[str, Callable[[Json], Runner]] = {
    "engine_drain": prepare_engine_drain,
    "raw_drain": prepare_raw_drain,
}


def _pool_main(index: int, commands: Any, results: Any) -> None:
    results.put(("up", index, None, None))
    while True:
        message = commands.get()
        if message is None:
            return
        _, job_id, kind, args = message
        try:
            runner = PREPARERS[kind](args)
            results.put(("ready", index, job_id, None))
            go = commands.get()
            delay = go[2] - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            results.put(("done", index, job_id, runner()))
        except BaseException:
            results.put(("error", index, job_id, traceback.format_exc()))


class Pool:
    """Spawned worker processes, started once and reused, that run one job each on command.
    Every job starts at the same instant: after all its processes are set up and connected."""

    def __init__(self, size: int, *, wait: bool = True) -> None:
        """With ``wait=False`` the processes start importing while the caller goes on (quick
        runs); the first job waits for them. Full runs wait, so no start-up disturbs a
        measurement."""
        ctx = multiprocessing.get_context("spawn")
        self._results = ctx.Queue()
        self._commands = [ctx.Queue() for _ in range(size)]
        self._procs = [
            ctx.Process(
                target=_pool_main,
                args=(i, self._commands[i], self._results),
                name=f"sqlite-tuning-{i}",
                daemon=True,
            )
            for i in range(size)
        ]
        self._job = 0
        for proc in self._procs:
            proc.start()
        self._started = False
        if wait:
            self._wait_started()

    def _wait_started(self) -> None:
        if not self._started:
            self._collect("up", None, self.size)
            self._started = True

    @property
    def size(self) -> int:
        return len(self._procs)

    def run(self, kind: str, nprocs: int, args: Json) -> list[Json]:
        if nprocs > self.size:
            raise ValueError(f"{nprocs} processes asked, the pool has {self.size}")
        self._wait_started()
        self._job += 1
        job = self._job
        for i in range(nprocs):
            self._commands[i].put(("prepare", job, kind, {**args, "index": i}))
        self._collect("ready", job, nprocs)
        start_at = time.monotonic() + 0.05
        for i in range(nprocs):
            self._commands[i].put(("go", job, start_at))
        return [out for _, out in sorted(self._collect("done", job, nprocs))]

    def _collect(self, expected: str, job: int | None, count: int) -> list[tuple[int, Any]]:
        deadline = time.monotonic() + JOB_TIMEOUT_S
        got: list[tuple[int, Any]] = []
        while len(got) < count:
            try:
                status, index, job_id, payload_ = self._results.get(
                    timeout=max(0.1, deadline - time.monotonic())
                )
            except queue.Empty:
                raise TimeoutError(f"pool: waited {JOB_TIMEOUT_S} s for {expected}") from None
            if status == "error":
                raise RuntimeError(f"pool worker {index} failed:\n{payload_}")
            if status != expected or job_id != job:
                raise RuntimeError(f"pool: got {status} for job {job_id}, expected {expected}")
            got.append((index, payload_))
        return got

    def close(self) -> None:
        for commands in self._commands:
            commands.put(None)
        for proc in self._procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()  # only our own worker, by its handle
                proc.join(timeout=5)


def merge_drain(outs: Sequence[Json], expected: int) -> Json:
    """One drain's figures across its processes; checks every task ran exactly once."""
    done = [task_id for out in outs for task_id in out["done"]]
    wall = max(out["last"] for out in outs) - min(out["first"] for out in outs)
    latencies = [lat for out in outs for lat in out["latencies_ns"]]
    errors: Counter[str] = Counter()
    for out in outs:
        errors.update(out["errors"])
    n = len(done)
    surfaced = sum(errors.values())
    metrics: Json = {
        "tasks_per_s": n / wall if wall > 0 else float("nan"),
        "p50_ms": percentile(latencies, 50) / 1e6,
        "p99_ms": percentile(latencies, 99) / 1e6,
        "busy_errors": surfaced,
        "busy_errors_per_1000": 1000 * surfaced / n if n else 0.0,
    }
    if "lock" in outs[0]:
        locks = [out["lock"] for out in outs]
        waits = sum(lock["waits"] for lock in locks)
        begins = [d for lock in locks for d in lock["durations"]]
        holds = [h for lock in locks for h in lock["holds"]]
        metrics.update(
            lock_waits=waits,
            lock_waits_per_1000=1000 * waits / n if n else 0.0,
            # share of the processes' time spent asleep in the busy handler
            lock_wait_share=sum(lock["wait_s"] for lock in locks) / (wall * len(outs)),
            begin_p99_ms=1000 * percentile(begins, 99),
            max_lock_wait_ms=1000 * max(lock["max_wait_s"] for lock in locks),
            # one writer at a time: summed hold times / wall = how busy the write lock was
            lock_held_share=sum(lock["hold_s"] for lock in locks) / wall,
            txn_hold_p50_ms=1000 * percentile(holds, 50),
        )
    checks = {
        "tasks": n,
        "expected": expected,
        "duplicates": n - len(set(done)),
        "lease_lost": sum(out.get("lease_lost", 0) for out in outs),
        "errors_by_kind": dict(errors),
        "wall_s": wall,
    }
    if n != expected or checks["duplicates"] or checks["lease_lost"]:
        raise AssertionError(f"drain was not exactly once: {checks}")
    return {"metrics": metrics, "checks": checks}


# --------------------------------------------------------------------------- experiments


class Recorder:
    """Collects the repetitions of each setting of one experiment, then summarizes them."""

    def __init__(
        self, name: str, title: str, question: str, noise: Callable[[], float | None]
    ) -> None:
        self.noise = noise
        self.name = name
        self.title = title
        self.question = question
        self.rows: dict[str, Json] = {}
        self.load: list[list[float] | None] = [loadavg()]
        self.started = time.monotonic()

    def add(self, label: str, params: Json, metrics: Json, checks: Json | None = None) -> None:
        row = self.rows.setdefault(label, {"setting": label, "params": params, "reps": []})
        checks = {**(checks or {}), "others_cpu_before": self.noise()}
        row["reps"].append({"metrics": metrics, "checks": checks})

    def result(self) -> Json:
        self.load.append(loadavg())
        rows = []
        for row in self.rows.values():
            names = list(row["reps"][0]["metrics"])
            row["metrics"] = {
                name: summarize([rep["metrics"][name] for rep in row["reps"]]) for name in names
            }
            row["checks"] = [rep["checks"] for rep in row["reps"]]
            del row["reps"]
            rows.append(row)
        noise = [
            check["others_cpu_before"]
            for row in rows
            for check in row["checks"]
            if check.get("others_cpu_before") is not None
        ]
        return {
            "title": self.title,
            "question": self.question,
            "others_cpu_before_jobs": {"median": statistics.median(noise), "max": max(noise)}
            if noise
            else None,
            "loadavg_start": self.load[0],
            "loadavg_end": self.load[-1],
            "duration_s": time.monotonic() - self.started,
            "rows": rows,
        }


def rotated(items: Sequence[Any], rep: int) -> list[Any]:
    """Each repetition starts with a different setting, so none always runs first."""
    shift = rep % len(items) if items else 0
    return list(items[shift:]) + list(items[:shift])


def progress(message: str) -> None:
    print(f"[sqlite-tuning {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def cpu_times() -> tuple[int, int] | None:
    """(idle, total) jiffies of all CPUs, from /proc/stat; None where there is none."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return None
    values = [int(x) for x in fields]
    return values[3] + values[4], sum(values)


def others_busy(window: float = 0.5) -> float | None:
    """Busy share of all CPUs over ``window`` seconds while none of our processes run: the
    load other tenants of this shared machine put on it."""
    before = cpu_times()
    time.sleep(window)
    after = cpu_times()
    if before is None or after is None or after[1] == before[1]:
        return None
    return 1 - (after[0] - before[0]) / (after[1] - before[1])


@dataclass
class QuietGate:
    """Before each job, wait (boundedly) until other tenants use at most ``threshold`` of the
    CPUs, as the peers' harness does; the share seen is stored with the job."""

    threshold: float = 0.25
    max_wait_s: float = 30.0
    budget_s: float = 600.0
    enabled: bool = True
    waited_s: float = 0.0

    def __call__(self) -> float | None:
        if not self.enabled:
            return None
        started = time.monotonic()
        while True:
            share = others_busy()
            waited = time.monotonic() - started
            if (
                share is None
                or share <= self.threshold
                or waited >= self.max_wait_s
                or self.waited_s + waited >= self.budget_s
            ):
                self.waited_s += waited
                return share
            time.sleep(0.5)


@dataclass
class Context:
    plan: Plan
    dbs: Databases
    gate: QuietGate
    pool: Pool | None = None
    last_others_cpu: float | None = None

    def job(self, message: str) -> None:
        """Announce a measurement and wait for the machine to be quiet enough for it."""
        progress(message)
        self.last_others_cpu = self.gate()

    def recorder(self, name: str, title: str, question: str) -> Recorder:
        return Recorder(name, title, question, lambda: self.last_others_cpu)


def _engine_single_loops(
    path: Path, pragmas: Mapping[str, int | str], n: int, warmup: int
) -> tuple[Json, Json]:
    """One process: n timed single-task enqueues, then n timed claim+complete cycles.
    Returns the figures and the PRAGMAs the connection really ran with."""
    db = open_database(path, pragmas)
    try:
        effective = effective_pragmas(db)
        tasks, leases = TaskRepository(db), LeaseRepository(db)
        specs = task_specs(n + warmup)
        for spec in specs[:warmup]:
            tasks.enqueue(spec)
        enqueue_ns: list[int] = []
        wal_peak = 0
        start = time.perf_counter()
        for i, spec in enumerate(specs[warmup:]):
            t0 = time.perf_counter_ns()
            tasks.enqueue(spec)
            enqueue_ns.append(time.perf_counter_ns() - t0)
            if i % 25 == 0:
                wal_peak = max(wal_peak, wal_size(path))
        enqueue_wall = time.perf_counter() - start
        for _ in range(warmup):
            claimed = leases.claim("tuning-single", TYPES)
            leases.complete(claimed[0].lease)
        cycle_ns: list[int] = []
        start = time.perf_counter()
        for i in range(n):
            t0 = time.perf_counter_ns()
            claimed = leases.claim("tuning-single", TYPES)
            leases.complete(claimed[0].lease)
            cycle_ns.append(time.perf_counter_ns() - t0)
            if i % 25 == 0:
                wal_peak = max(wal_peak, wal_size(path))
        cycle_wall = time.perf_counter() - start
        wal_peak = max(wal_peak, wal_size(path))
        if leases.claim("tuning-single", TYPES):
            raise AssertionError("tasks left over after the single-process loops")
    finally:
        db.dispose()
    metrics = {
        **latency_metrics("enqueue", enqueue_ns, n, enqueue_wall),
        **latency_metrics("cycle", cycle_ns, n, cycle_wall),
        "wal_peak_mb": wal_peak / MIB,
        "commits": 3 * (n + warmup),  # one enqueue, then one claim and one complete per task
    }
    return metrics, effective


def _raw_single_loops(path: Path, synchronous: str, n: int, warmup: int) -> Json:
    """The same loops with plain sqlite3, as in ../shared/peers (claim is one UPDATE)."""
    conn = raw_connect(path, synchronous)
    try:
        payloads = [json.dumps(payload(i), separators=(",", ":")) for i in range(n + warmup)]

        def enqueue(text_: str) -> None:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(RAW_INSERT, (text_,))
            conn.execute("COMMIT")

        def cycle() -> None:
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute(RAW_CLAIM_ONE_STATEMENT, (time.time() + 30,)).fetchone()
            conn.execute("COMMIT")
            json.loads(row[1])
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(RAW_COMPLETE, (row[0],))
            conn.execute("COMMIT")

        for text_ in payloads[:warmup]:
            enqueue(text_)
        enqueue_ns: list[int] = []
        start = time.perf_counter()
        for text_ in payloads[warmup:]:
            t0 = time.perf_counter_ns()
            enqueue(text_)
            enqueue_ns.append(time.perf_counter_ns() - t0)
        enqueue_wall = time.perf_counter() - start
        for _ in range(warmup):
            cycle()
        cycle_ns: list[int] = []
        start = time.perf_counter()
        for _ in range(n):
            t0 = time.perf_counter_ns()
            cycle()
            cycle_ns.append(time.perf_counter_ns() - t0)
        cycle_wall = time.perf_counter() - start
    finally:
        conn.close()
    return {
        **latency_metrics("raw_enqueue", enqueue_ns, n, enqueue_wall),
        **latency_metrics("raw_cycle", cycle_ns, n, cycle_wall),
    }


def exp_synchronous(ctx: Context) -> Json:
    plan = ctx.plan
    rec = ctx.recorder(
        "synchronous",
        "synchronous = NORMAL vs FULL (WAL), one process",
        "What does FULL cost per single-task transaction, through our engine and raw sqlite3?",
    )
    for rep in range(plan.reps):
        for mode in rotated(["NORMAL", "FULL"], rep):
            ctx.job(f"synchronous={mode} rep {rep + 1}/{plan.reps}")
            path = ctx.dbs.engine_copy()
            engine, effective = _engine_single_loops(
                path, {"synchronous": mode}, plan.sync_n, plan.warmup
            )
            ctx.dbs.discard(path)
            raw_path = ctx.dbs.raw_copy()
            raw = _raw_single_loops(raw_path, mode, plan.sync_raw_n, plan.warmup)
            ctx.dbs.discard(raw_path)
            metrics = {k: v for k, v in engine.items() if k not in ("wal_peak_mb", "commits")}
            rec.add(mode, {"synchronous": mode, "effective": effective}, {**metrics, **raw})
    return rec.result()


def _crash_child(path: str, acknowledged: Any) -> None:
    db = open_database(Path(path))
    tasks = TaskRepository(db)
    n = 0
    while True:
        tasks.enqueue(type=TASK_TYPE, payload=payload(n))
        n += 1
        acknowledged.value = n  # only after the commit returned


def exp_crash(ctx: Context) -> Json:
    """Kill an enqueuing process at a random moment; count acknowledged enqueues that vanished."""
    plan = ctx.plan
    rec = ctx.recorder(
        "crash",
        "Application crash under synchronous = NORMAL",
        "Does a commit acknowledged to the caller survive the process being killed?",
    )
    spawn = multiprocessing.get_context("spawn")
    rng = random.Random(7)
    totals: Counter[str] = Counter()
    for kill in range(plan.crash_kills):
        ctx.job(f"crash: kill {kill + 1}/{plan.crash_kills}")
        path = ctx.dbs.engine_copy()
        acknowledged = spawn.Value("q", 0, lock=False)
        child = spawn.Process(target=_crash_child, args=(str(path), acknowledged), daemon=True)
        child.start()
        target = rng.randint(*plan.crash_acks)
        deadline = time.monotonic() + 120
        while acknowledged.value < target and child.is_alive() and time.monotonic() < deadline:
            time.sleep(0.002)
        time.sleep(rng.random() * 0.01)  # land the kill anywhere inside a transaction
        child.kill()  # SIGKILL on POSIX, TerminateProcess on Windows: no cleanup runs
        child.join(timeout=30)
        if child.exitcode is not None and child.exitcode >= 0:
            raise RuntimeError(f"the enqueuing child ended by itself (exit {child.exitcode})")
        acked = int(acknowledged.value)
        conn = sqlite3.connect(path)
        try:
            stored = conn.execute("SELECT count(*) FROM task_queue").fetchone()[0]
            logs = conn.execute("SELECT count(*) FROM task_logs").fetchone()[0]
            integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
        finally:
            conn.close()
        ctx.dbs.discard(path)
        totals["kills"] += 1
        totals["acknowledged"] += acked
        totals["stored"] += stored
        totals["lost_acknowledged"] += max(0, acked - stored)
        totals["log_mismatch"] += int(logs != stored)
        totals["integrity_failures"] += int(integrity != "ok")
        totals["unacknowledged_but_stored"] += max(0, stored - acked)
    rec.add("NORMAL, SIGKILL", {"synchronous": "NORMAL"}, dict(totals))
    return rec.result()


def exp_wal_autocheckpoint(ctx: Context) -> Json:
    plan = ctx.plan
    rec = ctx.recorder(
        "wal_autocheckpoint",
        "wal_autocheckpoint (pages), one process",
        "How do throughput, commit tail latency and WAL size move with the checkpoint interval?",
    )
    for rep in range(plan.reps):
        for value in rotated(list(plan.checkpoint_values), rep):
            label = "off (0)" if value == 0 else str(value)
            ctx.job(f"wal_autocheckpoint={label} rep {rep + 1}/{plan.reps}")
            path = ctx.dbs.engine_copy()
            out, effective = _engine_single_loops(
                path, {"wal_autocheckpoint": value}, plan.checkpoint_n, plan.warmup
            )
            ctx.dbs.discard(path)
            commits = out.pop("commits")
            if value == 0:  # nothing was checkpointed: the WAL holds every frame written
                frames = out["wal_peak_mb"] * MIB / (4096 + WAL_FRAME_HEADER)
                params_extra = {"wal_frames_per_commit": frames / commits}
            else:
                params_extra = {}
            rec.add(label, {"wal_autocheckpoint": value, "effective": effective}, out, params_extra)
    return rec.result()


def exp_cache_mmap(ctx: Context) -> Json:
    plan = ctx.plan
    assert ctx.pool is not None
    rec = ctx.recorder(
        "cache_mmap",
        f"cache_size and mmap_size on a backlog of {plan.backlog_n:,} queued tasks",
        "Do a larger page cache or memory-mapped reads speed up claims and stats?",
    )
    for rep in range(plan.reps):
        for label, pragma_items in rotated(list(plan.cache_settings), rep):
            pragmas = dict(pragma_items)
            ctx.job(f"cache/mmap {label} rep {rep + 1}/{plan.reps}")
            path = ctx.dbs.engine_copy(plan.backlog_n)
            db = open_database(path, pragmas)
            try:
                tasks, leases = TaskRepository(db), LeaseRepository(db)
                stats_ms = []
                for _ in range(plan.backlog_stats_calls):
                    t0 = time.perf_counter()
                    tasks.stats()
                    stats_ms.append(1000 * (time.perf_counter() - t0))
                cycle_ns = []
                start = time.perf_counter()
                for _ in range(plan.backlog_cycles):
                    t0 = time.perf_counter_ns()
                    claimed = leases.claim("tuning-single", TYPES)
                    leases.complete(claimed[0].lease)
                    cycle_ns.append(time.perf_counter_ns() - t0)
                wall = time.perf_counter() - start
                pragmas_seen = effective_pragmas(db)
            finally:
                db.dispose()
            outs = ctx.pool.run(
                "engine_drain",
                plan.backlog_procs,
                {
                    "path": str(path),
                    "pragmas": pragmas,
                    "busy_ms": SQLITE_BUSY_TIMEOUT_MS,
                    "max_cycles": plan.backlog_proc_cycles,
                },
            )
            drain = merge_drain(outs, plan.backlog_procs * plan.backlog_proc_cycles)
            ctx.dbs.discard(path)
            metrics = {
                "stats_ms": statistics.median(stats_ms),
                "stats_first_ms": stats_ms[0],
                **latency_metrics("cycle", cycle_ns, plan.backlog_cycles, wall),
                "procs_tasks_per_s": drain["metrics"]["tasks_per_s"],
                "procs_p99_ms": drain["metrics"]["p99_ms"],
            }
            rec.add(
                label,
                {"pragmas": pragmas, "effective": pragmas_seen, "procs": plan.backlog_procs},
                metrics,
                drain["checks"],
            )
    return rec.result()


def _engine_drain(ctx: Context, nprocs: int, n: int, busy_ms: int, body: str = "noop") -> Json:
    assert ctx.pool is not None
    path = ctx.dbs.engine_copy(n)
    try:
        outs = ctx.pool.run(
            "engine_drain", nprocs, {"path": str(path), "busy_ms": busy_ms, "body": body}
        )
    finally:
        ctx.dbs.discard(path)
    return merge_drain(outs, n)


def exp_busy_timeout(ctx: Context) -> Json:
    plan = ctx.plan
    rec = ctx.recorder(
        "busy_timeout",
        "busy_timeout under contention (engine, no-op tasks, claim then complete)",
        "What happens to throughput and surfaced SQLITE_BUSY with 0, 100 ms and 5 s?",
    )
    combos = [(procs, busy) for procs in plan.busy_procs for busy in plan.busy_values]
    for rep in range(plan.reps):
        for procs, busy in rotated(combos, rep):
            ctx.job(f"busy_timeout={busy} ms, {procs} processes, rep {rep + 1}/{plan.reps}")
            out = _engine_drain(ctx, procs, plan.busy_n, busy)
            rec.add(
                f"{busy} ms, {procs} procs",
                {"busy_timeout_ms": busy, "procs": procs},
                out["metrics"],
                out["checks"],
            )
    return rec.result()


def exp_begin_mode(ctx: Context) -> Json:
    plan = ctx.plan
    assert ctx.pool is not None
    rec = ctx.recorder(
        "begin_mode",
        "Deferred BEGIN vs BEGIN IMMEDIATE for a read-then-write claim (plain sqlite3, "
        "busy_timeout 5 s)",
        "How many SQLITE_BUSY errors does a 5 s busy_timeout leave uncured with deferred BEGIN?",
    )
    combos = [(procs, mode) for procs in plan.begin_procs for mode in ("deferred", "immediate")]
    for rep in range(plan.reps):
        for procs, mode in rotated(combos, rep):
            ctx.job(f"BEGIN {mode}, {procs} processes, rep {rep + 1}/{plan.reps}")
            path = ctx.dbs.raw_copy(plan.begin_n)
            try:
                outs = ctx.pool.run(
                    "raw_drain", procs, {"path": str(path), "mode": mode, "busy_ms": 5000}
                )
            finally:
                ctx.dbs.discard(path)
            out = merge_drain(outs, plan.begin_n)
            errors = out["checks"]["errors_by_kind"]
            metrics = dict(out["metrics"])
            metrics["busy_snapshot_errors"] = sum(
                count for kind, count in errors.items() if kind.endswith("SQLITE_BUSY_SNAPSHOT")
            )
            rec.add(
                f"{mode}, {procs} procs", {"mode": mode, "procs": procs}, metrics, out["checks"]
            )
    return rec.result()


def exp_processes(ctx: Context) -> Json:
    plan = ctx.plan
    rec = ctx.recorder(
        "processes",
        "Writer processes claiming and completing through the engine (our settings)",
        "How many processes help, when do they hurt, and is any SQLITE_BUSY surfaced?",
    )
    combos = [(body, procs) for body in plan.scale_bodies for procs in plan.scale_procs]
    for rep in range(plan.reps):
        for body, procs in rotated(combos, rep):
            ctx.job(f"{procs} processes, {body} tasks, rep {rep + 1}/{plan.reps}")
            out = _engine_drain(ctx, procs, plan.scale_n[body], SQLITE_BUSY_TIMEOUT_MS, body)
            rec.add(
                f"{body}, {procs} procs",
                {"body": body, "procs": procs, "tasks": plan.scale_n[body]},
                out["metrics"],
                out["checks"],
            )
    return rec.result()


EXPERIMENTS: dict[str, Callable[[Context], Json]] = {
    "synchronous": exp_synchronous,
    "crash": exp_crash,
    "wal_autocheckpoint": exp_wal_autocheckpoint,
    "cache_mmap": exp_cache_mmap,
    "busy_timeout": exp_busy_timeout,
    "begin_mode": exp_begin_mode,
    "processes": exp_processes,
}
NEEDS_POOL = {"cache_mmap", "busy_timeout", "begin_mode", "processes"}


# --------------------------------------------------------------------------- environment


def git_commit() -> str | None:
    """HEAD of the checkout measured; SQLITE_TUNING_COMMIT names it for an exported snapshot."""
    if os.environ.get("SQLITE_TUNING_COMMIT"):
        return os.environ["SQLITE_TUNING_COMMIT"]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def filesystem_of(path: Path) -> str | None:
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return None
    best, best_type = "", None
    resolved = path.resolve().as_posix()
    for line in mounts:
        parts = line.split()
        if len(parts) < 3:
            continue
        inside = resolved == parts[1] or resolved.startswith(parts[1].rstrip("/") + "/")
        if inside and len(parts[1]) > len(best):
            best, best_type = parts[1], parts[2]
    return best_type


def environment(workdir: Path, defaults: Json) -> Json:
    return {
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "sqlalchemy": sqlalchemy.__version__,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "workdir_filesystem": filesystem_of(workdir),
        "engine_defaults": defaults,
    }


# --------------------------------------------------------------------------- reports


def fmt(value: float) -> str:
    if value != value:  # NaN
        return "n/a"
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 1000 or (magnitude >= 1 and float(value).is_integer()):
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def cell(summary: Json) -> str:
    text_ = fmt(summary["median"])
    if summary["spread"] and len(summary["reps"]) > 1:
        text_ += f" ±{100 * summary['spread']:.0f}%"
    return text_


COLUMNS: dict[str, list[tuple[str, str]]] = {
    "synchronous": [
        ("enqueue_per_s", "engine enqueue/s"),
        ("enqueue_p50_ms", "p50 ms"),
        ("enqueue_p99_ms", "p99 ms"),
        ("cycle_per_s", "engine claim+complete/s"),
        ("cycle_p50_ms", "p50 ms"),
        ("cycle_p99_ms", "p99 ms"),
        ("raw_enqueue_per_s", "raw enqueue/s"),
        ("raw_enqueue_p99_ms", "p99 ms"),
        ("raw_cycle_per_s", "raw claim+complete/s"),
        ("raw_cycle_p99_ms", "p99 ms"),
    ],
    "crash": [
        ("kills", "kills"),
        ("acknowledged", "acknowledged enqueues"),
        ("stored", "rows after restart"),
        ("lost_acknowledged", "acknowledged but lost"),
        ("log_mismatch", "task/log count mismatches"),
        ("integrity_failures", "integrity_check failures"),
    ],
    "wal_autocheckpoint": [
        ("enqueue_per_s", "enqueue/s"),
        ("enqueue_p99_ms", "p99 ms"),
        ("enqueue_max_ms", "max ms"),
        ("cycle_per_s", "claim+complete/s"),
        ("cycle_p99_ms", "p99 ms"),
        ("cycle_max_ms", "max ms"),
        ("wal_peak_mb", "WAL peak MiB"),
    ],
    "cache_mmap": [
        ("stats_first_ms", "stats() first ms"),
        ("stats_ms", "stats() median ms"),
        ("cycle_per_s", "1 proc claim+complete/s"),
        ("cycle_p99_ms", "p99 ms"),
        ("procs_tasks_per_s", "N procs tasks/s"),
        ("procs_p99_ms", "p99 ms"),
    ],
    "busy_timeout": [
        ("tasks_per_s", "tasks/s"),
        ("p50_ms", "p50 ms"),
        ("p99_ms", "p99 ms"),
        ("busy_errors", "SQLITE_BUSY surfaced"),
        ("busy_errors_per_1000", "per 1000 tasks"),
        ("lock_waits_per_1000", "busy-handler waits /1000"),
        ("max_lock_wait_ms", "longest wait ms"),
    ],
    "begin_mode": [
        ("tasks_per_s", "tasks/s"),
        ("p50_ms", "p50 ms"),
        ("p99_ms", "p99 ms"),
        ("busy_errors", "SQLITE_BUSY errors"),
        ("busy_snapshot_errors", "of which BUSY_SNAPSHOT"),
        ("busy_errors_per_1000", "per 1000 claims"),
    ],
    "processes": [
        ("tasks_per_s", "tasks/s"),
        ("p50_ms", "p50 ms"),
        ("p99_ms", "p99 ms"),
        ("busy_errors", "SQLITE_BUSY surfaced"),
        ("lock_waits_per_1000", "busy-handler waits /1000"),
        ("lock_wait_share", "share of time waiting"),
        ("begin_p99_ms", "BEGIN p99 ms"),
        ("max_lock_wait_ms", "longest wait ms"),
        ("lock_held_share", "write lock held"),
        ("txn_hold_p50_ms", "txn hold p50 ms"),
    ],
}


def _noise_note(exp: Json) -> str:
    noise = exp.get("others_cpu_before_jobs")
    if not noise:
        return ""
    return (
        f" Other tenants' CPU share just before the jobs: median {100 * noise['median']:.0f}%,"
        f" max {100 * noise['max']:.0f}%."
    )


def markdown(result: Json) -> str:
    run = result["run"]
    lines = [
        f"# SQLite tuning study: run {run['id']}",
        "",
        f"Generated by `python -m benchmarks.sqlite_tuning{' --quick' if run['quick'] else ''}`"
        f" on {run['date_utc']} (commit `{(run['git_commit'] or '?')[:10]}`),"
        f" {run['reps']} repetition(s), {run['duration_s']:.0f} s.",
        f"Python {run['python']}, SQLite {run['sqlite']}, SQLAlchemy {run['sqlalchemy']},"
        f" {run['cpus']} CPUs, {run['platform']}, database files on"
        f" {run['workdir_filesystem'] or 'unknown fs'}.",
        f"Load average at start {run['loadavg_start']}, at end {run['loadavg_end']}.",
        "",
        "Cells are the median of the repetitions, ±spread = (max - min) / median."
        " Discussion: `docs/research/sqlite-tuning.md`.",
        "",
    ]
    for name, exp in result["experiments"].items():
        columns = [c for c in COLUMNS.get(name, []) if c[0] in exp["rows"][0]["metrics"]]
        lines += [
            f"## {exp['title']}",
            "",
            f"{exp['question']} Load average {exp['loadavg_start']} → {exp['loadavg_end']},"
            f" {exp['duration_s']:.0f} s.{_noise_note(exp)}",
            "",
            "| setting | " + " | ".join(label for _, label in columns) + " |",
            "|---" * (len(columns) + 1) + "|",
        ]
        for row in exp["rows"]:
            cells = [cell(row["metrics"][key]) for key, _ in columns]
            lines.append(f"| {row['setting']} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _series(exp: Json, key: str, where: Callable[[Json], bool]) -> tuple[list[Json], list[float]]:
    rows = [row for row in exp["rows"] if where(row["params"])]
    return rows, [row["metrics"][key]["median"] for row in rows]


def _by(field: str, value: Any) -> Callable[[Json], bool]:
    return lambda params: bool(params[field] == value)


def _errors(rows: list[Json], key: str) -> list[list[float]]:
    low = [row["metrics"][key]["median"] - row["metrics"][key]["min"] for row in rows]
    high = [row["metrics"][key]["max"] - row["metrics"][key]["median"] for row in rows]
    return [low, high]


def _process_axis(ax: Any, procs: Sequence[int]) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(procs), [str(p) for p in procs])
    ax.minorticks_off()
    ax.set_xlabel("processes")


def plot(result: Json, img_dir: Path) -> list[Path]:
    """PNG plots made from the JSON alone (so they can be redrawn with --plot-only)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    img_dir.mkdir(parents=True, exist_ok=True)
    exps = result["experiments"]
    stamp = f"run {result['run']['id']}, median of {result['run']['reps']}, bars = min..max"
    written: list[Path] = []

    def save(fig: Any, name: str) -> None:
        fig.tight_layout()
        target = img_dir / f"tuning_{name}.png"
        fig.savefig(target, dpi=110)
        plt.close(fig)
        written.append(target)

    if "synchronous" in exps:
        exp = exps["synchronous"]
        keys = [
            ("enqueue_per_s", "engine\nenqueue"),
            ("cycle_per_s", "engine\nclaim+complete"),
            ("raw_enqueue_per_s", "raw sqlite3\nenqueue"),
            ("raw_cycle_per_s", "raw sqlite3\nclaim+complete"),
        ]
        fig, ax = plt.subplots(figsize=(8, 4.2))
        width = 0.38
        for i, row in enumerate(exp["rows"]):
            xs = [k + (i - 0.5) * width for k in range(len(keys))]
            values = [row["metrics"][key]["median"] for key, _ in keys]
            errs = [
                [row["metrics"][key]["median"] - row["metrics"][key]["min"] for key, _ in keys],
                [row["metrics"][key]["max"] - row["metrics"][key]["median"] for key, _ in keys],
            ]
            ax.bar(xs, values, width, yerr=errs, capsize=3, label=f"synchronous={row['setting']}")
        ax.set_xticks(range(len(keys)), [label for _, label in keys])
        ax.set_yscale("log")
        ax.set_ylabel("operations/s (log)")
        ax.set_title(f"synchronous NORMAL vs FULL, one process ({stamp})", fontsize=9)
        ax.legend()
        save(fig, "synchronous")

    if "wal_autocheckpoint" in exps:
        exp = exps["wal_autocheckpoint"]
        rows = exp["rows"]
        labels = [row["setting"] for row in rows]
        fig, axes = plt.subplots(1, 3, figsize=(11, 3.6))
        for ax, key, title in (
            (axes[0], "enqueue_per_s", "enqueue/s"),
            (axes[1], "enqueue_max_ms", "slowest enqueue (ms)"),
            (axes[2], "wal_peak_mb", "WAL peak (MiB)"),
        ):
            values = [row["metrics"][key]["median"] for row in rows]
            ax.bar(labels, values, yerr=_errors(rows, key), capsize=3, color="tab:blue")
            ax.set_title(title)
            ax.set_xlabel("wal_autocheckpoint (pages)")
        fig.suptitle(f"wal_autocheckpoint ({stamp})", fontsize=9)
        save(fig, "wal_autocheckpoint")

    if "cache_mmap" in exps:
        exp = exps["cache_mmap"]
        rows = exp["rows"]
        labels = [row["setting"].replace(" (", "\n(").replace(" + ", "\n+ ") for row in rows]
        fig, axes = plt.subplots(1, 3, figsize=(13, 4))
        for ax, key, title in (
            (axes[0], "stats_ms", "stats() ms (median call)"),
            (axes[1], "cycle_per_s", "1 process claim+complete/s"),
            (axes[2], "procs_tasks_per_s", "several processes, tasks/s"),
        ):
            values = [row["metrics"][key]["median"] for row in rows]
            ax.bar(range(len(rows)), values, yerr=_errors(rows, key), capsize=3)
            ax.set_xticks(range(len(rows)), labels, fontsize=7, rotation=25, ha="right")
            ax.set_title(title)
        fig.suptitle(f"cache_size / mmap_size on a large backlog ({stamp})", fontsize=9)
        save(fig, "cache_mmap")

    if "busy_timeout" in exps:
        exp = exps["busy_timeout"]
        procs_values = sorted({row["params"]["procs"] for row in exp["rows"]})
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
        for procs in procs_values:
            rows, values = _series(exp, "tasks_per_s", _by("procs", procs))
            labels = [str(row["params"]["busy_timeout_ms"]) for row in rows]
            axes[0].errorbar(
                labels,
                values,
                yerr=_errors(rows, "tasks_per_s"),
                marker="o",
                capsize=3,
                label=f"{procs} processes",
            )
            _, per_1000 = _series(exp, "busy_errors_per_1000", _by("procs", procs))
            axes[1].plot(labels, per_1000, marker="o", label=f"{procs} processes")
        axes[0].set_title("tasks/s")
        axes[1].set_title("SQLITE_BUSY surfaced per 1000 tasks (symlog)")
        axes[1].set_yscale("symlog", linthresh=1)
        for ax in axes:
            ax.set_xlabel("busy_timeout (ms)")
            ax.legend()
        fig.suptitle(f"busy_timeout under contention ({stamp})", fontsize=9)
        save(fig, "busy_timeout")

    if "begin_mode" in exps:
        exp = exps["begin_mode"]
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
        for mode in ("deferred", "immediate"):
            rows, values = _series(exp, "tasks_per_s", _by("mode", mode))
            procs = [row["params"]["procs"] for row in rows]
            axes[0].errorbar(
                procs,
                values,
                yerr=_errors(rows, "tasks_per_s"),
                marker="o",
                capsize=3,
                label=f"BEGIN {mode}",
            )
            _, per_1000 = _series(exp, "busy_errors_per_1000", _by("mode", mode))
            axes[1].plot(procs, per_1000, marker="o", label=f"BEGIN {mode}")
        axes[0].set_title("tasks/s (read-then-write claim + complete)")
        axes[1].set_title("SQLITE_BUSY per 1000 claims (busy_timeout 5 s, symlog)")
        axes[1].set_yscale("symlog", linthresh=1)
        for ax in axes:
            _process_axis(ax, procs)
            ax.legend()
        fig.suptitle(f"deferred vs immediate, plain sqlite3 ({stamp})", fontsize=9)
        save(fig, "begin_mode")

    if "processes" in exps:
        exp = exps["processes"]
        bodies = sorted({row["params"]["body"] for row in exp["rows"]})
        fig, axes = plt.subplots(1, 4, figsize=(16, 3.8))
        axis: list[int] = []
        for body in bodies:
            rows, values = _series(exp, "tasks_per_s", _by("body", body))
            axis = [row["params"]["procs"] for row in rows]
            axes[0].errorbar(
                axis,
                values,
                yerr=_errors(rows, "tasks_per_s"),
                marker="o",
                capsize=3,
                label=f"engine, {body} tasks",
            )
            for ax, key, scale in (
                (axes[1], "p99_ms", 1),
                (axes[2], "lock_wait_share", 100),
                (axes[3], "lock_held_share", 100),
            ):
                _, series = _series(exp, key, _by("body", body))
                ax.plot(axis, [scale * v for v in series], marker="o", label=f"{body} tasks")
        if "begin_mode" in exps:
            rows, values = _series(exps["begin_mode"], "tasks_per_s", _by("mode", "immediate"))
            axes[0].plot(
                [row["params"]["procs"] for row in rows],
                values,
                marker="s",
                linestyle="--",
                label="raw sqlite3 (2-step claim)",
            )
        axes[0].set_title("tasks/s")
        axes[0].set_yscale("log")
        axes[1].set_title("p99 claim+complete (ms)")
        axes[2].set_title("% of process time in the busy handler")
        axes[3].set_title("% of wall time the write lock is held")
        for ax in axes:
            _process_axis(ax, axis)
            ax.legend(fontsize=8)
        fig.suptitle(f"writer processes, our settings ({stamp})", fontsize=9)
        save(fig, "processes")
    return written


# --------------------------------------------------------------------------- main


def run_study(plan: Plan, quick: bool, only: Iterable[str], workdir: Path, gate: QuietGate) -> Json:
    names = [name for name in EXPERIMENTS if not only or name in only]
    started = time.monotonic()
    load_start = loadavg()
    dbs = Databases(workdir)
    ctx = Context(plan, dbs, gate)
    try:
        probe = ctx.dbs.engine_copy()
        db = open_database(probe)
        defaults = effective_pragmas(db)
        db.dispose()
        ctx.dbs.discard(probe)
        run: Json = {
            "id": datetime.now().strftime("%Y%m%d-%H%M%S"),
            "quick": quick,
            "reps": plan.reps,
            **environment(workdir, defaults),
            "loadavg_start": load_start,
        }
        if NEEDS_POOL.intersection(names):
            progress(f"starting {plan.pool_size} spawned worker processes")
            ctx.pool = Pool(plan.pool_size, wait=not quick)
        experiments = {}
        for name in names:
            experiments[name] = EXPERIMENTS[name](ctx)
    finally:
        if ctx.pool is not None:
            ctx.pool.close()
        dbs.close()
    run["loadavg_end"] = loadavg()
    run["quiet_gate"] = {
        "threshold": gate.threshold,
        "max_wait_s": gate.max_wait_s,
        "enabled": gate.enabled,
        "waited_s": gate.waited_s,
    }
    run["duration_s"] = time.monotonic() - started
    return {"run": run, "plan": _plan_json(plan), "experiments": experiments}


def _plan_json(plan: Plan) -> Json:
    return {
        key: (dict(value) if isinstance(value, Mapping) else value)
        for key, value in plan.__dict__.items()
    }


def write_outputs(result: Json, out_dir: Path, img_dir: Path | None) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / f"{RESULT_NAME}.json"
    md_path = out_dir / f"{RESULT_NAME}.md"
    json_path.write_text(json.dumps(result, indent=1, default=str) + "\n", encoding="utf-8")
    md_path.write_text(markdown(result) + "\n", encoding="utf-8")
    written = [json_path, md_path]
    if img_dir is not None:
        written += plot(result, img_dir)
    return written


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.sqlite_tuning", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 1 repetition")
    parser.add_argument("--reps", type=int, help="repetitions (default 3, quick 1)")
    parser.add_argument(
        "--only", help=f"comma-separated experiments among: {', '.join(EXPERIMENTS)}"
    )
    parser.add_argument("--out", type=Path, help="where the JSON and markdown go")
    parser.add_argument("--img", type=Path, help="where the PNG plots go")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument(
        "--workdir", type=Path, help="directory for the database files (default: a temp dir)"
    )
    parser.add_argument(
        "--quiet-gate",
        type=float,
        default=0.25,
        help="before each job, wait until other tenants use at most this CPU share (0.25)",
    )
    parser.add_argument(
        "--quiet-max-wait",
        type=float,
        default=30.0,
        help="longest wait per job for the quiet gate, seconds (30; 0 = off; off in --quick)",
    )
    parser.add_argument(
        "--plot-only", type=Path, metavar="JSON", help="redraw plots and markdown from a JSON"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.plot_only:
        result = json.loads(args.plot_only.read_text(encoding="utf-8"))
        out = args.out or args.plot_only.parent
        for path in write_outputs(result, out, None if args.no_plots else (args.img or IMG_DIR)):
            print(path)
        return 0
    plan = QUICK_PLAN if args.quick else FULL_PLAN
    if args.reps:
        plan = replace(plan, reps=args.reps)
    only = [name.strip() for name in args.only.split(",")] if args.only else []
    unknown = set(only) - set(EXPERIMENTS)
    if unknown:
        print(f"unknown experiments: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    scratch = Path(tempfile.mkdtemp(prefix="prismq-sqlite-tuning-"))
    if args.out:
        out_dir = args.out
    elif args.quick:
        out_dir = scratch / "results"
    else:
        out_dir = RESULTS_DIR
    img_dir = None if args.no_plots else (args.img or (out_dir if args.quick else IMG_DIR))
    # Database files go in a directory of our own, removed afterwards (inside --workdir if given).
    base = args.workdir or scratch
    base.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="db-", dir=base))
    try:
        gate = QuietGate(
            threshold=args.quiet_gate,
            max_wait_s=args.quiet_max_wait,
            enabled=not args.quick and args.quiet_max_wait > 0,
        )
        result = run_study(plan, args.quick, only, workdir, gate)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if out_dir != scratch / "results":
            shutil.rmtree(scratch, ignore_errors=True)
    for path in write_outputs(result, out_dir, img_dir):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
