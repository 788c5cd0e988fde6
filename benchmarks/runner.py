"""One benchmark run: every system x workload, N interleaved reps, then the report.

Each job (one system, one workload, one rep) is a fresh ``python -m benchmarks.workloads``
process. Reps are interleaved: within a rep every system runs every workload, and the
system that starts rotates from rep to rep, so slow drifts of the machine spread over all of
them. Before each job the SQLite files are recreated or the PostgreSQL tables truncated (the
systems' ``reset``).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import environment, report
from benchmarks.progress import Progress
from benchmarks.systems import (
    DATA_DIR_ENV,
    DEFAULT_SYSTEMS,
    PG_URL_ENV,
    SYSTEMS,
    Where,
    get_system,
    system_class,
)

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "benchmarks" / "results"
PG_ENV = "PRISMQ_QUEUE_TEST_POSTGRES_URL"

QUICK_SIZES = [
    "--n-w1",
    "500",
    "--n-w2",
    "5000",
    "--n-w3",
    "500",
    "--w4-seconds",
    "1",
    "--grace",
    "0.5",
]
SIZES_TEXT = {
    "W1": "10,000 single enqueues (+100 warm-up, untimed)",
    "W2": "100,000 in batches of 1,000 (+1 warm-up batch, untimed)",
    "W3": "10,000 pre-loaded no-op tasks, drained by 1 and by 4 worker processes",
    "W4": "1 task every 10 ms for 5 s (500 tasks), 1 worker",
}


@dataclass
class Options:
    reps: int = 3
    workloads: Sequence[str] = ("W1", "W2", "W3", "W4")
    backends: Sequence[str] = ("sqlite", "postgresql")
    systems: Sequence[str] | None = None
    quick: bool = False
    pg_url: str | None = None
    out: Path | None = None
    quiet_gate: float = 25.0
    quiet_max_wait: float = 60.0
    quiet_wait_budget: float = 300.0
    variants: bool = True
    progress: bool = True


@dataclass
class Job:
    system: str
    key: str
    workload: str
    args: list[str]
    timeout: float
    results: list[dict[str, Any]] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)


def job_specs(system: str, workloads: Sequence[str], variants: bool) -> list[Job]:
    cls = system_class(system)
    jobs = []
    if "W1" in workloads:
        for variant in cls.W1_VARIANTS if variants else ("default",):
            suffix = "" if variant == "default" else f"[{variant}]"
            env = cls.W1_VARIANT_ENV.get(variant, {})
            jobs.append(Job(system, f"W1_enqueue{suffix}", "W1", [], 240, env=dict(env)))
    if "W2" in workloads:
        jobs.append(Job(system, "W2_batch_enqueue", "W2", [], 240))
    if "W3" in workloads:
        for variant in cls.W3_VARIANTS if variants else ("default",):
            suffix = "" if variant == "default" else f"[{variant}]"
            for nproc in (1, 4):
                args = ["--nproc", str(nproc), "--variant", variant]
                jobs.append(Job(system, f"W3_drain_{nproc}proc{suffix}", "W3", args, 330))
    if "W4" in workloads:
        for variant in cls.W4_VARIANTS if variants else ("default",):
            suffix = "" if variant == "default" else f"[{variant}]"
            jobs.append(Job(system, f"W4_latency{suffix}", "W4", ["--variant", variant], 150))
    return jobs


# --- PostgreSQL: a schema of the run's own ---


def pg_base_url(opts: Options) -> str | None:
    return opts.pg_url or os.environ.get(PG_ENV) or None


def create_pg_schema(base_url: str) -> tuple[str | None, str]:
    """A fresh database, and a schema in it, for this run: (its URL, or None and why not).

    A database of its own, not only a schema: pg_stat_database then counts this run's commits
    and rows alone on a server that other tenants share (``db_counters`` per task)."""
    try:
        from sqlalchemy import create_engine, text
        from sqlalchemy.engine import make_url

        from queue_core.database import Database

        url = Database(base_url).url
        name = f"prismq_bench_{uuid.uuid4().hex[:10]}"
        engine = create_engine(
            url, connect_args={"connect_timeout": 5}, isolation_level="AUTOCOMMIT"
        )
        try:
            with engine.connect() as conn:
                conn.execute(text(f"CREATE DATABASE {name}"))
        finally:
            engine.dispose()
        db_url = make_url(url).set(database=name)
        engine = create_engine(db_url, connect_args={"connect_timeout": 5})
        try:
            with engine.begin() as conn:
                conn.execute(text(f"CREATE SCHEMA {name}"))
        finally:
            engine.dispose()
        schema_url = db_url.update_query_dict({"options": f"-csearch_path={name}"})
        return schema_url.render_as_string(hide_password=False), name
    except Exception as exc:
        return None, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def drop_pg_schema(base_url: str, schema: str) -> None:
    """Drop the run's database (``create_pg_schema``), whoever is still connected to it."""
    from sqlalchemy import create_engine, text

    from queue_core.database import Database

    engine = create_engine(Database(base_url).url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {schema} WITH (FORCE)"))
    finally:
        engine.dispose()


# --- running one job ---

_current: subprocess.Popen[str] | None = None


def _on_term(signum: int, _frame: Any) -> None:
    if _current is not None and _current.poll() is None:
        _current.send_signal(signal.SIGTERM)  # the job stops its own workers
        try:
            _current.wait(20)
        except subprocess.TimeoutExpired:
            _current.kill()
    sys.exit(128 + signum)


def run_job(
    job: Job, outdir: Path, env: dict[str, str], size_args: list[str], cwd: Path = ROOT
) -> dict[str, Any]:
    """Run one job as ``python -m benchmarks.workloads`` in ``cwd``: the tree whose
    ``benchmarks``, ``queue_core`` and ``workers`` it imports (``-m`` puts ``cwd`` first on
    ``sys.path``)."""
    global _current
    argv = [
        sys.executable,
        "-m",
        "benchmarks.workloads",
        job.system,
        job.workload,
        "--outdir",
        str(outdir),
        *job.args,
        *size_args,
    ]
    t0 = time.monotonic()
    p = subprocess.Popen(
        argv,
        cwd=cwd,
        env={**env, **job.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _current = p
    try:
        out, err = p.communicate(timeout=job.timeout)
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGTERM)  # its handler stops its own workers
        try:
            out, err = p.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
        return {
            "ok": False,
            "error": f"job timeout after {job.timeout}s",
            "stderr_tail": (err or "")[-1500:],
            "wall_s": time.monotonic() - t0,
        }
    finally:
        _current = None
    lines = [ln for ln in (out or "").strip().splitlines() if ln.startswith("{")]
    if not lines:
        return {
            "ok": False,
            "error": f"no result (exit code {p.returncode})",
            "stderr_tail": (err or "")[-1500:],
            "wall_s": time.monotonic() - t0,
        }
    res: dict[str, Any] = json.loads(lines[-1])
    res["wall_s"] = time.monotonic() - t0
    if err and err.strip():
        res["stderr_tail"] = err[-1500:]
    return res


def brief(job: Job, res: dict[str, Any]) -> str:
    if not res.get("ok"):
        return ("skipped: " if res.get("skipped") else "ERROR ") + str(res.get("error"))
    if res.get("na"):
        return "n/a"
    parts = [
        f"{name}={res[name]:.4g}"
        for name, _ in report.metrics_of(job.key)
        if res.get(name) is not None
    ]
    if job.workload in ("W3", "W4"):
        parts.append(f"lost={res.get('lost')} extra={res.get('extra_executions')}")
        if res.get("busy_lines"):
            parts.append(f"BUSY={res['busy_lines']}")
    return " ".join(parts)


# --- the run ---


def select_systems(opts: Options, pg_available: bool) -> tuple[list[str], list[str]]:
    """The systems to run and notes on those left out."""
    notes: list[str] = []
    wanted = list(opts.systems) if opts.systems else list(DEFAULT_SYSTEMS)
    chosen = []
    for name in wanted:
        if name not in SYSTEMS:
            raise SystemExit(f"unknown system {name!r}; known: {', '.join(SYSTEMS)}")
        cls = system_class(name)
        if cls.BACKEND not in opts.backends:
            continue
        if cls.BACKEND == "postgresql" and not pg_available:
            continue
        missing = cls.missing()
        if missing:
            notes.append(
                f"{name} not run: {', '.join(missing)} not installed "
                "(pip install -e '.[bench-peers]')"
            )
            continue
        chosen.append(name)
    return chosen, notes


def run(opts: Options) -> dict[str, Any]:
    signal.signal(signal.SIGTERM, _on_term)
    reps = 1 if opts.quick else opts.reps
    size_args = QUICK_SIZES if opts.quick else []
    out = opts.out or (
        RESULTS_DIR / "raw" / "quick.json" if opts.quick else RESULTS_DIR / "latest.json"
    )
    run_id = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    rawdir = RESULTS_DIR / "raw" / run_id
    data_dir = rawdir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []

    pg_url, schema = None, None
    if "postgresql" in opts.backends:
        base = pg_base_url(opts)
        if base is None:
            notes.append(f"PostgreSQL skipped: set {PG_ENV} or pass --pg-url to measure it")
        else:
            pg_url, why = create_pg_schema(base)
            if pg_url is None:
                notes.append(f"PostgreSQL skipped: {base} is unreachable ({why})")
            else:
                schema = why
    systems, skipped_notes = select_systems(opts, pg_url is not None)
    notes += skipped_notes
    gate_wait = 0.0 if opts.quick else opts.quiet_max_wait

    env = dict(os.environ)
    env[DATA_DIR_ENV] = str(data_dir)
    if pg_url:
        env[PG_URL_ENV] = pg_url
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")

    jobs_by_system = {s: job_specs(s, opts.workloads, opts.variants) for s in systems}
    total_jobs = reps * sum(len(j) for j in jobs_by_system.values())
    progress = Progress(total_jobs, enabled=opts.progress)
    for note in notes:
        progress.line(f"note: {note}")

    t_start = time.monotonic()
    info = environment.versions(pg_url)
    info["loadavg_start"] = environment.loadavg()
    raw: dict[str, dict[str, list[dict[str, Any]]]] = {}
    prev_busy: float | None = None
    waited_total = 0.0
    try:
        for rep in range(reps):
            k = rep % max(1, len(systems))
            order = systems[k:] + systems[:k]
            for system in order:
                for job in jobs_by_system[system]:
                    outdir = (
                        rawdir
                        / system
                        / f"{job.key}-rep{rep + 1}".replace("[", "_").replace("]", "")
                    )
                    busy = prev_busy
                    if busy is None and not opts.quick:
                        busy = environment.cpu_busy()
                    max_wait = min(gate_wait, max(0.0, opts.quiet_wait_budget - waited_total))
                    waited = 0.0
                    if max_wait > 0:
                        progress.status(
                            f"waiting for other tenants to go quiet ({busy or 0:.0f}% busy)"
                        )
                        waited, busy = environment.wait_for_quiet(opts.quiet_gate, max_wait, busy)
                        waited_total += waited
                    progress.status(f"rep {rep + 1}/{reps} {system} {job.key}")
                    load_before = dict(environment.machine_load(), cpu_busy_pct=busy)
                    res = run_job(job, outdir, env, size_args)
                    if not opts.quick:
                        time.sleep(0.3)  # our own stragglers (PG backends, checkpoints) settle
                        prev_busy = environment.cpu_busy()
                    res["rep"] = rep + 1
                    res["load_before"] = load_before
                    res["load_after"] = dict(environment.machine_load(), cpu_busy_pct=prev_busy)
                    res["waited_for_quiet_s"] = waited
                    res["noisy"] = any(
                        v is not None and v > opts.quiet_gate for v in (busy, prev_busy)
                    )
                    raw.setdefault(system, {}).setdefault(job.key, []).append(res)
                    noisy = " NOISY" if res["noisy"] else ""
                    progress.advance(
                        f"rep{rep + 1} {system:18s} {job.key:24s} {brief(job, res)}{noisy}"
                    )
    finally:
        progress.close()
        if pg_url and schema:
            base = pg_base_url(opts)
            assert base is not None
            drop_pg_schema(base, schema)
        _remove_data(data_dir)

    info["loadavg_end"] = environment.loadavg()
    summary = report.aggregate(raw)
    doc: dict[str, Any] = {
        "run_id": run_id,
        "reps": reps,
        "quick": opts.quick,
        "total_runtime_s": time.monotonic() - t_start,
        "sizes": QUICK_SIZES if opts.quick else SIZES_TEXT,
        "systems": systems,
        "notes": notes,
        "environment": info,
        "noise_gate": {
            "other_tenant_cpu_busy_pct": opts.quiet_gate,
            "max_wait_s": gate_wait,
            "wait_budget_s": opts.quiet_wait_budget,
            "waited_total_s": waited_total,
        },
        "system_notes": {
            s: {
                "library": system_class(s).LIBRARY,
                "notes": list(get_system(s, Where(data_dir, pg_url)).NOTES),
                "batch": system_class(s).BATCH_NOTE,
            }
            for s in systems
        },
        "summary": summary,
        "raw": raw,
        "raw_dir": _rel(rawdir),
    }
    doc["targets"] = report.targets(summary, raw)
    doc["targets_issue11"] = report.targets_issue11(summary)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1, default=str))
    out.with_suffix(".md").write_text(report.render_markdown(doc))
    doc["_out"] = str(out)
    return doc


def _rel(path: Path) -> str:
    try:
        return path.relative_to(ROOT).as_posix()
    except ValueError:
        return str(path)


def _remove_data(data_dir: Path) -> None:
    import shutil

    shutil.rmtree(data_dir, ignore_errors=True)
