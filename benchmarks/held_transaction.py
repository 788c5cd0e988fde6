"""PostgreSQL under steady load while another session holds a transaction open (issue 11 F).

``python -m benchmarks.held_transaction`` reproduces the third-party benchmark's phase:

* a producer offers ``--rate`` jobs/s (default 200) on an absolute schedule, one
  ``TaskRepository.enqueue`` per job;
* ``--workers`` (default 4) ``prismq-queue worker`` processes, CLI defaults, run a handler that
  sleeps ``--work-ms`` (default 1 ms);
* after ``--steady`` s, another session runs ``BEGIN; SELECT txid_current();`` and then nothing
  for ``--hold`` s (default 60): while it is open, vacuum can remove no row version that died
  after it began; then it rolls back and the run goes on for ``--after`` s.

Per ``--window`` s (default 5) it reports the offered rate, the throughput (completions), the
backlog, and the claim latency p50/p99: from enqueue to claim (``reserved_at_utc -
created_at_utc`` of the tasks claimed in the window; this is what a job-queue benchmark calls
pickup or claim latency, and it includes any queueing). It also reports the workers' own claim
statement time (their ``prismq_worker_claim_seconds`` histograms, scraped each window; the p99
is a bucket bound), and once per window an ``EXPLAIN (ANALYZE, BUFFERS)`` of the claim
statement run in a transaction that is rolled back, with the table's dead tuples: the
evidence of why a claim slows down (docs/benchmarks.md, "PostgreSQL with a transaction held
open").

Everything runs in a throwaway schema of the server named by ``--pg-url`` or
``$PRISMQ_QUEUE_TEST_POSTGRES_URL``; the schema is dropped at the end. Results:
``--out`` (JSON) and the same name with ``.md`` (a markdown table).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib
import json
import math
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from benchmarks.held_handlers import HELD_TASK_TYPE, WORK_MS_ENV
from benchmarks.runner import PG_ENV, RESULTS_DIR, ROOT, create_pg_schema, drop_pg_schema
from benchmarks.systems import pg_connect_kwargs
from benchmarks.workloads import stop_workers

TARGET_THROUGHPUT_FRACTION = 195 / 200  # issue 11 F: >= 195/s at 200/s offered
TARGET_CLAIM_P99_MS = 50.0
DEFAULT_OUT = RESULTS_DIR / "held_transaction.json"

Worker = tuple[subprocess.Popen[bytes], IO[bytes]]


# --- the claim statement the probe explains ---


def _pg_sql() -> Any:
    try:  # where the dialect seam lives since issue 11 A, else where it was before
        return importlib.import_module("queue_core.dialects.postgresql_sql")
    except ImportError:
        return importlib.import_module("queue_core.claim.postgresql")


def claim_statement() -> str:
    """The PostgreSQL claim statement of the default strategy, as psycopg takes it."""
    from queue_core.states import STRATEGY_DEFAULT

    pg = _pg_sql()
    return str(pg.dbapi_sql(pg.CLAIM_SQL[STRATEGY_DEFAULT]))


def claim_setup() -> tuple[str, ...]:
    """What a worker runs in the claim's transaction before the claim (plan pinning)."""
    return tuple(getattr(_pg_sql(), "CLAIM_SETUP_SQL", ()))


def _plan_numbers(plan: dict[str, Any]) -> dict[str, Any]:
    """Execution time, buffers, and the index scans' figures of an EXPLAIN (FORMAT JSON)."""
    scans: list[dict[str, Any]] = []

    def walk(node: dict[str, Any]) -> None:
        if "Index" in node.get("Node Type", ""):
            scans.append(
                {
                    "node": node.get("Node Type"),
                    "index": node.get("Index Name"),
                    "rows": node.get("Actual Rows"),
                    "shared_hit": node.get("Shared Hit Blocks"),
                    "shared_read": node.get("Shared Read Blocks"),
                    "ms": node.get("Actual Total Time"),
                }
            )
        for child in node.get("Plans", []):
            walk(child)

    top = plan["Plan"]
    walk(top)
    return {
        "execution_ms": plan.get("Execution Time"),
        "planning_ms": plan.get("Planning Time"),
        "shared_hit": top.get("Shared Hit Blocks"),
        "shared_read": top.get("Shared Read Blocks"),
        "index_scans": scans,
    }


class Probe(threading.Thread):
    """Once per window: EXPLAIN (ANALYZE, BUFFERS) of a claim (rolled back), dead tuples."""

    def __init__(self, url: str, window: float, t0: float, explain: bool) -> None:
        super().__init__(name="held-probe", daemon=True)
        self.url = url
        self.window = window
        self.t0 = t0
        self.explain = explain
        self.samples: list[dict[str, Any]] = []
        self.plans: dict[str, Any] = {}
        self.stop = threading.Event()
        self.errors: list[str] = []

    def run(self) -> None:
        import psycopg

        sql = claim_statement()
        with psycopg.connect(**pg_connect_kwargs(self.url)) as conn:
            k = 0
            while not self.stop.wait(max(0.0, self.t0 + (k + 0.5) * self.window - time.time())):
                try:
                    self.samples.append(self._sample(conn, sql, k))
                except Exception as exc:
                    self.errors.append(f"{type(exc).__name__}: {exc}"[:300])
                    conn.rollback()
                k += 1

    def _sample(self, conn: Any, sql: str, k: int) -> dict[str, Any]:
        sample: dict[str, Any] = {"window": k}
        with conn.cursor() as cur:
            cur.execute(
                "SELECT n_live_tup, n_dead_tup, n_tup_upd, n_tup_hot_upd, autovacuum_count,"
                " pg_relation_size('task_queue') FROM pg_stat_user_tables"
                " WHERE relid = 'task_queue'::regclass"
            )
            row = cur.fetchone()
            if row is not None:
                keys = ("n_live_tup", "n_dead_tup", "n_tup_upd", "n_tup_hot_upd")
                sample.update(zip(keys, row[:4], strict=False))
                sample["autovacuum_count"] = row[4]
                sample["heap_bytes"] = row[5]
            conn.rollback()
            if self.explain:
                # The claim as the workers run it (after CLAIM_SETUP_SQL), and the bare
                # statement (the plan the planner picks on its own): the same state, twice.
                for label, setup in (("", claim_setup()), ("bare_", ())):
                    for statement in setup:
                        cur.execute(statement)
                    plan = self._explain(cur, sql)
                    conn.rollback()  # the probe's claim never happened
                    sample.update({label + k: v for k, v in _plan_numbers(plan).items()})
                    self.plans[label + str(k)] = plan
        return sample

    @staticmethod
    def _explain(cur: Any, sql: str) -> dict[str, Any]:
        now = dt.datetime.now(dt.timezone.utc)
        cur.execute(
            "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql,
            {
                "worker_id": "held-probe",
                "now": now,
                "lease_until": now + dt.timedelta(seconds=30),
                "types": [HELD_TASK_TYPE],
                "capabilities": "{}",
                "limit": 1,
            },
        )
        raw = cur.fetchone()[0]
        plan: dict[str, Any] = (json.loads(raw) if isinstance(raw, str) else raw)[0]
        return plan


# --- the session that holds a transaction open ---


class Holder(threading.Thread):
    def __init__(self, url: str, start_at: float, hold: float) -> None:
        super().__init__(name="held-txn", daemon=True)
        self.url, self.start_at, self.hold = url, start_at, hold
        self.began: float | None = None
        self.ended: float | None = None
        self.txid: int | None = None
        self.error: str | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        import psycopg

        try:
            if self.stop.wait(max(0.0, self.start_at - time.time())):
                return
            with psycopg.connect(**pg_connect_kwargs(self.url)) as conn:
                with conn.cursor() as cur:
                    cur.execute("SELECT txid_current()")  # psycopg sent BEGIN first
                    self.txid = int(cur.fetchone()[0])  # type: ignore[index]
                self.began = time.time()
                self.stop.wait(max(0.0, self.began + self.hold - time.time()))
                conn.rollback()
                self.ended = time.time()
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"


# --- workers and their claim histograms ---


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_workers(
    url: str, n: int, work_ms: float, outdir: Path, extra: Sequence[str]
) -> tuple[list[Worker], list[int]]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env[WORK_MS_ENV] = str(work_ms)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    procs: list[Worker] = []
    ports: list[int] = []
    for k in range(n):
        port = _free_port()
        argv = [
            sys.executable,
            "-m",
            "queue_core.cli",
            "worker",
            "--import",
            "benchmarks.held_handlers",
            "--database-url",
            url,
            "--metrics-port",
            str(port),
            *extra,
        ]
        log = (outdir / f"worker-{k}.log").open("wb")
        p = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        procs.append((p, log))
        ports.append(port)
    return procs, ports


def scrape_claim_buckets(ports: Sequence[int]) -> dict[float, float] | None:
    """Cumulative ``prismq_worker_claim_seconds`` buckets summed over the workers."""
    total: dict[float, float] = {}
    for port in ports:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                text = r.read().decode()
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith("prismq_worker_claim_seconds_bucket{"):
                le = line.split('le="', 1)[1].split('"', 1)[0]
                bound = math.inf if le == "+Inf" else float(le)
                total[bound] = total.get(bound, 0.0) + float(line.rsplit(" ", 1)[1])
    return total or None


def bucket_quantile(diff: dict[float, float], q: float) -> float | None:
    """The smallest bucket bound holding the q-quantile (seconds), or None if empty."""
    bounds = sorted(diff)
    n = diff[bounds[-1]] if bounds else 0.0
    if n <= 0:
        return None
    for bound in bounds:
        if diff[bound] >= q * n:
            return bound
    return math.inf


def wait_workers_ready(ports: Sequence[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if scrape_claim_buckets(ports) is not None:
            return True
        time.sleep(0.2)
    return False


# --- the run ---


def _percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def analyse(
    rows: Sequence[tuple[float, float | None, float | None, int, str]],
    t0: float,
    window: float,
    n_windows: int,
) -> list[dict[str, Any]]:
    """Per window: offered, completed, backlog at its end, enqueue-to-claim p50/p99 (ms)."""
    out = []
    for k in range(n_windows):
        lo, hi = t0 + k * window, t0 + (k + 1) * window
        created = sum(1 for c, *_ in rows if lo <= c < hi)
        done = sum(1 for _, _, f, _, _ in rows if f is not None and lo <= f < hi)
        backlog = sum(1 for c, _, f, _, _ in rows if c < hi and (f is None or f >= hi))
        waits = [(r - c) * 1000 for c, r, _, _, _ in rows if r is not None and lo <= r < hi]
        out.append(
            {
                "window": k,
                "t_s": k * window,
                "offered_per_s": created / window,
                "throughput_per_s": done / window,
                "backlog": backlog,
                "claims": len(waits),
                "claim_p50_ms": _percentile(waits, 0.50),
                "claim_p99_ms": _percentile(waits, 0.99),
            }
        )
    return out


def phase_summary(
    rows: Sequence[tuple[float, float | None, float | None, int, str]], lo: float, hi: float
) -> dict[str, Any]:
    done = sum(1 for _, _, f, _, _ in rows if f is not None and lo <= f < hi)
    offered = sum(1 for c, *_ in rows if lo <= c < hi)
    waits = [(r - c) * 1000 for c, r, _, _, _ in rows if r is not None and lo <= r < hi]
    span = max(1e-9, hi - lo)
    return {
        "seconds": span,
        "offered_per_s": offered / span,
        "throughput_per_s": done / span,
        "claim_p50_ms": _percentile(waits, 0.50),
        "claim_p99_ms": _percentile(waits, 0.99),
        "claim_max_ms": max(waits) if waits else None,
    }


def run(a: argparse.Namespace) -> dict[str, Any]:
    from sqlalchemy import text

    from queue_core import migrate
    from queue_core.database import Database
    from queue_core.repositories import TaskRepository

    base = a.pg_url or os.environ.get(PG_ENV)
    if not base:
        raise SystemExit(f"set {PG_ENV} or pass --pg-url")
    url, schema = create_pg_schema(base)
    if url is None:
        raise SystemExit(f"PostgreSQL unreachable: {schema}")
    run_id = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    outdir = Path(a.logdir) if a.logdir else RESULTS_DIR / "raw" / f"held-{run_id}"
    outdir.mkdir(parents=True, exist_ok=True)
    procs: list[Worker] = []
    holder: Holder | None = None
    probe: Probe | None = None
    try:
        db = Database(url)
        migrate.upgrade(db)
        repo = TaskRepository(db)
        procs, ports = start_workers(url, a.workers, a.work_ms, outdir, a.worker_arg)
        ready = wait_workers_ready(ports, 60.0)
        metrics_ok = ready
        total = a.steady + a.hold + a.after
        n_windows = math.ceil(total / a.window)
        t0 = time.time() + 0.2
        holder = Holder(url, t0 + a.steady, a.hold)
        holder.start()
        probe = Probe(url, a.window, t0, a.explain)
        probe.start()
        enqueue_ms: list[float] = []
        counts = [0] * a.producers

        def produce(k: int) -> None:
            # Producer k offers jobs k, k + P, k + 2P, ... on the absolute schedule, so the
            # offered rate holds while one enqueue takes longer than 1/rate.
            i = k
            while True:
                due = t0 + i / a.rate
                if due >= t0 + total:
                    return
                wait = due - time.time()
                if wait > 0:
                    time.sleep(wait)
                s = time.perf_counter()
                repo.enqueue(type=HELD_TASK_TYPE, payload={"i": i})
                enqueue_ms.append((time.perf_counter() - s) * 1000)
                counts[k] += 1
                i += a.producers

        producers = [
            threading.Thread(target=produce, args=(k,), name=f"producer-{k}", daemon=True)
            for k in range(a.producers)
        ]
        for thread in producers:
            thread.start()
        buckets: list[dict[float, float] | None] = []
        next_scrape = t0
        while metrics_ok and len(buckets) <= n_windows:
            time.sleep(max(0.0, next_scrape - time.time()))
            buckets.append(scrape_claim_buckets(ports))
            next_scrape += a.window
        for thread in producers:
            thread.join()
        produced = sum(counts)
        # Drain what is left, then stop.
        drain_deadline = time.monotonic() + a.drain_timeout
        while time.monotonic() < drain_deadline:
            with db.read() as conn:  # one short transaction per look: no snapshot held
                left = conn.execute(
                    text("SELECT count(*) FROM task_queue WHERE status <> 'completed'")
                ).scalar_one()
            if left == 0:
                break
            time.sleep(0.5)
        t_drained = time.time()
        probe.stop.set()
        holder.stop.set()
        stop_workers(procs, grace=15.0)
        procs = []
        with db.read() as conn:
            result = conn.execute(
                text(
                    "SELECT extract(epoch FROM created_at_utc),"
                    " extract(epoch FROM reserved_at_utc), extract(epoch FROM finished_at_utc),"
                    " attempts, status FROM task_queue"
                )
            ).all()
            log_counts: dict[str, int] = dict(
                conn.execute(text("SELECT message, count(*) FROM task_logs GROUP BY message")).all()
            )
        db.dispose()
        rows = [
            (float(c), None if r is None else float(r), None if f is None else float(f), n, s)
            for c, r, f, n, s in result
        ]
        windows = analyse(rows, t0, a.window, n_windows)
        for k, w in enumerate(windows):
            lo = buckets[k] if k < len(buckets) else None
            hi = buckets[k + 1] if k + 1 < len(buckets) else None
            if lo is not None and hi is not None:
                diff = {b: hi.get(b, 0.0) - lo.get(b, 0.0) for b in hi}
                p50, p99 = bucket_quantile(diff, 0.5), bucket_quantile(diff, 0.99)
                w["claim_stmt_p50_ms_le"] = None if p50 is None else p50 * 1000
                w["claim_stmt_p99_ms_le"] = None if p99 is None else p99 * 1000
                w["claim_statements"] = diff.get(math.inf, 0.0)
        by_window = {s["window"]: s for s in probe.samples}
        for w in windows:
            sample = by_window.get(w["window"])
            if sample is not None:
                w["probe"] = sample
        began = holder.began or (t0 + a.steady)
        ended = holder.ended or (began + a.hold)
        for w in windows:
            mid = t0 + w["t_s"] + a.window / 2
            w["phase"] = "held" if began <= mid < ended else ("before" if mid < began else "after")
        held = phase_summary(rows, began, ended)
        target_tp = a.rate * TARGET_THROUGHPUT_FRACTION
        held["target"] = {
            "throughput_per_s": target_tp,
            "claim_p99_ms": TARGET_CLAIM_P99_MS,
            "throughput_met": held["throughput_per_s"] >= target_tp,
            "claim_p99_met": held["claim_p99_ms"] is not None
            and held["claim_p99_ms"] < TARGET_CLAIM_P99_MS,
        }
        held_windows = [w for w in windows if w["phase"] == "held"]
        held["worst_window_throughput_per_s"] = min(
            (w["throughput_per_s"] for w in held_windows), default=None
        )
        held["worst_window_claim_p99_ms"] = max(
            (w["claim_p99_ms"] or 0.0 for w in held_windows), default=None
        )
        completed = sum(1 for *_, s in rows if s == "completed")
        plans = probe.plans
        last_held = max((w["window"] for w in held_windows), default=None)
        doc: dict[str, Any] = {
            "run_id": run_id,
            "schema": schema,
            "settings": {
                "rate_per_s": a.rate,
                "workers": a.workers,
                "producers": a.producers,
                "work_ms": a.work_ms,
                "worker_args": list(a.worker_arg),
                "steady_s": a.steady,
                "hold_s": a.hold,
                "after_s": a.after,
                "window_s": a.window,
            },
            "held_txid": holder.txid,
            "holder_error": holder.error,
            "held_phase": held,
            "before_phase": phase_summary(rows, t0, began),
            "after_phase": phase_summary(rows, ended, t0 + total),
            "produced": produced,
            "completed": completed,
            # not completed when the drain timed out: late, not necessarily lost
            "unfinished": produced - completed,
            "extra_attempts": sum(n - 1 for *_, n, _s in rows if n > 1),
            "drain_s_after_producer": t_drained - (t0 + total),
            "log_counts": log_counts,
            "enqueue_p50_ms": _percentile(enqueue_ms, 0.5),
            "enqueue_p99_ms": _percentile(enqueue_ms, 0.99),
            "worker_metrics": metrics_ok,
            "probe_errors": probe.errors[:5],
            "windows": windows,
            "plan_before": plans.get("0"),
            "plan_end_of_hold": plans.get(str(last_held)) if last_held is not None else None,
            "bare_plan_end_of_hold": (
                plans.get(f"bare_{last_held}") if last_held is not None else None
            ),
            "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None,
        }
        return doc
    finally:
        if holder is not None:
            holder.stop.set()
        if probe is not None:
            probe.stop.set()
        if procs:
            stop_workers(procs, grace=10.0)
        with contextlib.suppress(Exception):
            drop_pg_schema(base, schema)


def _ms(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return "> 5000"
    return f"{value:.{digits}f}"


def render_markdown(doc: dict[str, Any]) -> str:
    s = doc["settings"]
    held = doc["held_phase"]
    tgt = held["target"]
    lines = [
        f"# PostgreSQL with a transaction held open (run {doc['run_id']})",
        "",
        f"{s['rate_per_s']:g} jobs/s offered, {s['workers']} worker processes "
        f"({' '.join(s['worker_args']) or 'CLI defaults'}), {s['work_ms']:g} ms of work per job; "
        f"{s['steady_s']:g} s steady, then `BEGIN; SELECT txid_current();` held idle for "
        f"{s['hold_s']:g} s, then {s['after_s']:g} s more. Claim latency = enqueue to claim "
        "(`reserved_at_utc - created_at_utc`); claim statement = the workers' "
        "`prismq_worker_claim_seconds` (a bucket bound); probe = `EXPLAIN (ANALYZE, BUFFERS)` "
        "of one claim as the workers run it, rolled back; bare = the same claim statement "
        "without `CLAIM_SETUP_SQL` (the planner's own choice), same moment.",
        "",
        "| phase | throughput/s | claim p50 ms | claim p99 ms | claim max ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, key in (
        ("before", "before_phase"),
        ("**held**", "held_phase"),
        ("after", "after_phase"),
    ):
        p = doc[key]
        lines.append(
            f"| {name} | {p['throughput_per_s']:.1f} | {_ms(p['claim_p50_ms'])} | "
            f"{_ms(p['claim_p99_ms'])} | {_ms(p['claim_max_ms'])} |"
        )
    lines += [
        "",
        f"Target during the held transaction: throughput >= {tgt['throughput_per_s']:g}/s "
        f"({'met' if tgt['throughput_met'] else 'MISSED'}: {held['throughput_per_s']:.1f}), "
        f"claim p99 < {tgt['claim_p99_ms']:g} ms "
        f"({'met' if tgt['claim_p99_met'] else 'MISSED'}: {_ms(held['claim_p99_ms'])}). "
        f"Produced {doc['produced']}, completed {doc['completed']}, "
        f"unfinished at the end {doc['unfinished']}, "
        f"extra attempts {doc['extra_attempts']}.",
        "",
        "| t (s) | phase | offered/s | done/s | backlog | claim p50 ms | claim p99 ms "
        "| stmt p50 ms <= | stmt p99 ms <= | probe claim ms | probe buffers "
        "| probe bare ms | bare buffers | dead tuples |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for w in doc["windows"]:
        probe = w.get("probe", {})
        lines.append(
            f"| {w['t_s']:g} | {w['phase']} | {w['offered_per_s']:.0f} | "
            f"{w['throughput_per_s']:.0f} | {w['backlog']} | {_ms(w['claim_p50_ms'])} | "
            f"{_ms(w['claim_p99_ms'])} | {_ms(w.get('claim_stmt_p50_ms_le'), 1)} | "
            f"{_ms(w.get('claim_stmt_p99_ms_le'), 1)} | {_ms(probe.get('execution_ms'), 2)} | "
            f"{probe.get('shared_hit', '-')} | {_ms(probe.get('bare_execution_ms'), 2)} | "
            f"{probe.get('bare_shared_hit', '-')} | {probe.get('n_dead_tup', '-')} |"
        )
    return "\n".join(lines) + "\n"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.held_transaction", description=__doc__)
    p.add_argument("--rate", type=float, default=200.0, help="jobs offered per second")
    p.add_argument("--workers", type=int, default=4, help="worker processes")
    p.add_argument("--producers", type=int, default=4, help="producer threads")
    p.add_argument("--work-ms", type=float, default=1.0, help="handler time per job")
    p.add_argument("--steady", type=float, default=20.0, help="seconds before the hold")
    p.add_argument("--hold", type=float, default=60.0, help="seconds the transaction is held")
    p.add_argument("--after", type=float, default=20.0, help="seconds after the hold")
    p.add_argument("--window", type=float, default=5.0, help="report window, seconds")
    p.add_argument("--drain-timeout", type=float, default=60.0)
    p.add_argument(
        "--worker-arg",
        action="append",
        default=[],
        help="extra argument for every worker (repeat), e.g. --worker-arg=--concurrency=8",
    )
    p.add_argument("--no-explain", dest="explain", action="store_false")
    p.add_argument("--pg-url", default=None, help=f"default ${PG_ENV}")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--logdir", default=None, help="worker logs (default under results/raw/)")
    return p


def main(argv: Sequence[str] | None = None) -> None:
    a = parser().parse_args(argv)
    doc = run(a)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(doc, indent=1, default=str))
    md = render_markdown(doc)
    a.out.with_suffix(".md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
