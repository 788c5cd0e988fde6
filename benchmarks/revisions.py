"""The same workloads on two revisions of prismq-queue, run alternately: does HEAD regress?

``python -m benchmarks.revisions --base 7fc61c0 [--head .|REV] --workloads W1,W3,W4
--backends sqlite,postgresql --reps N [--quick]``

The base revision (and the head revision, when it is one rather than ``.``, the working tree)
is checked out into a temporary ``git worktree`` under a directory from :mod:`tempfile`,
removed at the end even when the run fails. Nothing is installed: each job is this venv's
``python -m benchmarks.workloads`` started with ``cwd`` and ``PYTHONPATH`` set to its tree, so
the job process, the worker processes it starts (``benchmarks.workloads`` puts its own tree
first on their ``PYTHONPATH`` too) and the migrations that create its database all come from
that tree. A ``sitecustomize`` probe on ``PYTHONPATH`` writes, as each of those processes
exits, where its ``queue_core``, ``workers``, ``benchmarks`` and ``migrations`` came from; the
run checks every file lies in the job's tree, and reads each database's Alembic revision.

Each tree has a database of its own (SQLite files in its own directory, a PostgreSQL database
of its own), created fresh by that tree's harness before every job and migrated with that
tree's migrations. Jobs alternate between the trees, job by job, and the tree that goes first
swaps every rep, so the other tenants' load falls on both alike. Each tree runs with its own
worker defaults (the JSON lists the constants that differ).

Results: ``benchmarks/results/revisions.json`` and ``.md`` (per-rep figures, medians, the
head/base ratio of each metric with the ratios of the adjacent pairs), and with ``--docs`` the
generated block of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import environment, runner
from benchmarks.progress import Progress
from benchmarks.systems import DATA_DIR_ENV, PG_URL_ENV, PRISMQ, system_class

ROOT = runner.ROOT
RESULTS_DIR = runner.RESULTS_DIR
DOCS_PAGE = ROOT / "docs" / "benchmarks.md"
MARK_START, MARK_END = "<!-- revisions:start -->", "<!-- revisions:end -->"
PROBE_ENV = "PRISMQ_REVISIONS_PROBE_DIR"
PROBED_PACKAGES = ("queue_core", "workers", "benchmarks", "migrations")
WORKLOADS = ("W1", "W3", "W4")
BACKENDS = ("sqlite", "postgresql")
SYSTEM_OF = {system_class(name).BACKEND: name for name in PRISMQ}
TREES = ("base", "head")
# The harness files whose code is measured along with the queue's: the report says whether
# they are the same in both trees.
HARNESS_FILES = (
    "benchmarks/workloads.py",
    "benchmarks/prismq.py",
    "benchmarks/systems.py",
    "benchmarks/records.py",
    "benchmarks/handlers.py",
)
# (metric, higher is better); the first of each is the one the verdict reads.
METRICS: dict[str, list[tuple[str, bool]]] = {
    "W1_enqueue": [("tasks_per_s", True), ("p50_ms", False)],
    "W3_drain_1proc": [("tasks_per_s", True), ("cpu_us_per_task", False)],
    "W3_drain_4proc": [("tasks_per_s", True), ("cpu_us_per_task", False)],
    "W4_latency": [("p50_ms", False), ("p99_ms", False)],
}
TOLERANCE = 0.05
"""A head slower than base by more than this share, with no overlap of the reps' ranges, is a
regression beyond noise."""

# Written as sitecustomize.py into a directory on every job's PYTHONPATH: at exit each
# Python process of the job records where its packages came from.
PROBE_SOURCE = f'''\
import atexit, json, os, sys

_dir = os.environ.get("{PROBE_ENV}")
if _dir:
    def _probe():
        mods = {{n: getattr(sys.modules.get(n), "__file__", None) for n in {PROBED_PACKAGES!r}}}
        with open(os.path.join(_dir, "probe-%d.json" % os.getpid()), "w") as f:
            json.dump({{"pid": os.getpid(), "argv": sys.argv, "modules": mods}}, f)

    atexit.register(_probe)
'''

# Run in each tree: the module-level constants of the worker and queue defaults.
DEFAULTS_SOURCE = """\
import json, workers.defaults as w, queue_core.settings as s
out = {}
for mod in (w, s):
    for k, v in vars(mod).items():
        if k.isupper() and isinstance(v, (int, float, str, bool)):
            out[mod.__name__ + "." + k] = v
print(json.dumps(out))
"""


def _git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def commit_of(rev: str) -> str | None:
    """The full commit id of ``rev``, or None when this clone does not have it."""
    try:
        return _git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    except (subprocess.CalledProcessError, FileNotFoundError):
        return None


def describe(commit: str) -> dict[str, str]:
    return {
        "commit": commit,
        "short": commit[:7],
        "subject": _git("log", "-1", "--format=%s", commit)[:120],
        "date": _git("log", "-1", "--format=%cI", commit),
    }


def proc_loadavg() -> str | None:
    try:
        return Path("/proc/loadavg").read_text().strip()
    except OSError:
        return None


# --- the trees ---


class Trees:
    """The two source trees, in temporary worktrees where they are revisions."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.worktrees: list[Path] = []
        self.paths: dict[str, Path] = {}
        self.info: dict[str, dict[str, Any]] = {}

    def add(self, name: str, rev: str) -> None:
        if rev == ".":
            commit = _git("rev-parse", "HEAD")
            dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
            self.paths[name] = ROOT
            self.info[name] = {**describe(commit), "rev": "working tree", "dirty": dirty}
            return
        found = commit_of(rev)
        if found is None:
            raise SystemExit(f"{rev!r} is not a commit in this clone (a shallow clone?)")
        path = self.tmp / name
        _git("worktree", "add", "--detach", "--quiet", str(path), found)
        self.worktrees.append(path)
        self.paths[name] = path
        self.info[name] = {**describe(found), "rev": rev, "dirty": False}

    def remove(self) -> None:
        for path in self.worktrees:
            with contextlib.suppress(subprocess.CalledProcessError):
                _git("worktree", "remove", "--force", str(path))
        with contextlib.suppress(subprocess.CalledProcessError):
            _git("worktree", "prune")

    def harness_identical(self) -> bool:
        base, head = self.info["base"], self.info["head"]
        args = ["diff", "--quiet", base["commit"]]
        if head["rev"] != "working tree":
            args.append(head["commit"])
        try:
            _git(*args, "--", *HARNESS_FILES)
        except subprocess.CalledProcessError:
            return False
        return True


def tree_defaults(tree: Path) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-c", DEFAULTS_SOURCE],
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    if proc.returncode != 0:
        return {"error": proc.stderr[-500:]}
    out: dict[str, Any] = json.loads(proc.stdout)
    return out


def defaults_diff(base: dict[str, Any], head: dict[str, Any]) -> dict[str, list[Any]]:
    """Constants whose value differs, or that exist in one tree only: name -> [base, head]."""
    return {
        k: [base.get(k), head.get(k)]
        for k in sorted(set(base) | set(head))
        if k != "error" and base.get(k) != head.get(k)
    }


# --- the probe and the schema revision ---


def read_probes(probe_dir: Path, tree: Path) -> dict[str, Any]:
    """What the job's processes imported, and whether every file lies in ``tree``."""
    root = tree.resolve()
    processes = []
    wrong: list[str] = []
    for path in sorted(probe_dir.glob("probe-*.json")):
        probe = json.loads(path.read_text())
        argv = probe.get("argv") or []
        role = "worker" if "worker" in argv[1:2] else "job"
        processes.append({"role": role, "modules": probe["modules"]})
        for name, file in probe["modules"].items():
            if file is not None and root not in Path(file).resolve().parents:
                wrong.append(f"{role} {name} from {file}")
    return {
        "job_processes": sum(1 for p in processes if p["role"] == "job"),
        "worker_processes": sum(1 for p in processes if p["role"] == "worker"),
        "queue_core_files": sorted(
            {p["modules"]["queue_core"] for p in processes if p["modules"].get("queue_core")}
        ),
        "outside_tree": wrong,
    }


def schema_revision(url: str) -> str | None:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except Exception as exc:
        return f"unreadable: {type(exc).__name__}"
    finally:
        engine.dispose()


# --- the run ---


def job_list(workloads: list[str], nprocs: list[int]) -> list[runner.Job]:
    jobs = runner.job_specs(SYSTEM_OF["sqlite"], workloads, variants=False)
    keep = {f"W3_drain_{n}proc" for n in nprocs}
    return [j for j in jobs if j.workload != "W3" or j.key in keep]


def size_args(a: argparse.Namespace) -> list[str]:
    args = list(runner.QUICK_SIZES) if a.quick else []
    for flag, value in (("--n-w1", a.n_w1), ("--n-w3", a.n_w3), ("--w4-seconds", a.w4_seconds)):
        if value is not None:
            args += [flag, str(value)]
    return args


class Session:
    """One run's state: the trees, their databases, the results so far."""

    def __init__(self, a: argparse.Namespace, progress: Progress) -> None:
        self.a = a
        self.progress = progress
        self.tmp = Path(tempfile.mkdtemp(prefix="prismq-revisions-"))
        self.trees = Trees(self.tmp)
        self.pg_base: str | None = a.pg_url or os.environ.get(runner.PG_ENV) or None
        self.pg_urls: dict[str, str] = {}
        self.pg_names: list[str] = []
        self.backends = list(a.backends)
        self.notes: list[str] = []
        self.sizes = size_args(a)
        self.raw: dict[str, dict[str, dict[str, list[dict[str, Any]]]]] = {}
        self.queue_core_files: dict[str, set[str]] = {t: set() for t in TREES}
        self.outside: dict[str, list[str]] = {t: [] for t in TREES}
        self.schema_revs: dict[str, dict[str, set[str]]] = {t: {} for t in TREES}
        self.waited_total = 0.0

    def setup(self) -> None:
        self.trees.add("base", self.a.base)
        self.trees.add("head", self.a.head)
        (self.tmp / "probe").mkdir()
        (self.tmp / "probe" / "sitecustomize.py").write_text(PROBE_SOURCE)
        if "postgresql" not in self.backends:
            return
        if self.pg_base is None:
            self.notes.append(f"PostgreSQL skipped: set {runner.PG_ENV} or pass --pg-url")
            self.backends.remove("postgresql")
            return
        for tree in TREES:  # a database of each tree's own, migrated by that tree's harness
            url, name = runner.create_pg_schema(self.pg_base)
            if url is None:
                self.notes.append(f"PostgreSQL skipped: {name}")
                self.backends.remove("postgresql")
                return
            self.pg_urls[tree] = url
            self.pg_names.append(name)

    def close(self) -> None:
        self.progress.close()
        for name in self.pg_names:
            assert self.pg_base is not None
            with contextlib.suppress(Exception):
                runner.drop_pg_schema(self.pg_base, name)
        self.trees.remove()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _wait_for_quiet(self) -> tuple[float, float | None]:
        if self.a.quick:
            return 0.0, None
        busy = environment.cpu_busy()
        max_wait = min(
            self.a.quiet_max_wait, max(0.0, self.a.quiet_wait_budget - self.waited_total)
        )
        if max_wait <= 0:
            return 0.0, busy
        self.progress.status(f"waiting for quiet ({busy or 0:.0f}% busy)")
        waited, busy = environment.wait_for_quiet(self.a.quiet_gate, max_wait, busy)
        self.waited_total += waited
        return waited, busy

    def run_one(self, tree: str, backend: str, job: runner.Job, rep: int, position: int) -> None:
        path = self.trees.paths[tree]
        system = SYSTEM_OF[backend]
        label = f"{tree}/{backend}/{job.key}/rep{rep}"
        outdir = self.tmp / "raw" / tree / backend / f"{job.key}-rep{rep}"
        probe_dir = outdir.with_name(outdir.name + "-probe")
        data_dir = self.tmp / "data" / tree
        for d in (outdir, probe_dir, data_dir):
            d.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env["PYTHONPATH"] = f"{path}{os.pathsep}{self.tmp / 'probe'}"
        env[PROBE_ENV] = str(probe_dir)
        env[DATA_DIR_ENV] = str(data_dir)
        if backend == "postgresql":
            env[PG_URL_ENV] = self.pg_urls[tree]
        waited, busy = self._wait_for_quiet()
        self.progress.status(label)
        load_before = dict(environment.machine_load(), cpu_busy_pct=busy)
        spec = runner.Job(system, job.key, job.workload, job.args, job.timeout)
        cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        res = runner.run_job(spec, outdir, env, self.sizes, cwd=path)
        cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        # The job process and the workers it waited for: start-up and preload included.
        res["job_cpu_s"] = cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime
        busy_after = None if self.a.quick else environment.cpu_busy(0.3)
        res.update(
            rep=rep,
            position=position,
            load_before=load_before,
            load_after=dict(environment.machine_load(), cpu_busy_pct=busy_after),
            waited_for_quiet_s=waited,
            noisy=any(v is not None and v > self.a.quiet_gate for v in (busy, busy_after)),
        )
        probe = read_probes(probe_dir, path)
        if probe["job_processes"] < 1 or (job.workload != "W1" and probe["worker_processes"] < 1):
            probe["outside_tree"].append("a process left no probe")
        res["probe"] = probe
        self.queue_core_files[tree].update(probe["queue_core_files"])
        self.outside[tree] += [f"{label}: {w}" for w in probe["outside_tree"]]
        url = self.pg_urls[tree] if backend == "postgresql" else f"sqlite:///{data_dir}/{system}.db"
        res["schema_revision"] = schema_revision(url)
        self.schema_revs[tree].setdefault(backend, set()).add(str(res["schema_revision"]))
        self.raw.setdefault(tree, {}).setdefault(backend, {}).setdefault(job.key, []).append(res)
        self.progress.advance(f"{label:40s} {_brief(job, res)}")


def measure(a: argparse.Namespace, progress: Progress) -> dict[str, Any]:
    reps = 1 if a.quick else a.reps
    started = dt.datetime.now(dt.timezone.utc)
    load_start = proc_loadavg()
    jobs = job_list(a.workloads, a.nprocs)
    s = Session(a, progress)
    try:
        s.setup()
        defaults = {t: tree_defaults(s.trees.paths[t]) for t in TREES}
        env_info = environment.versions(s.pg_urls.get("head"))
        progress.total = max(1, reps * len(s.backends) * len(jobs) * len(TREES))
        for note in s.notes:
            progress.line(f"note: {note}")
        for t in TREES:
            progress.line(f"{t}: {s.trees.info[t]['short']} {s.trees.paths[t]}")
        for rep in range(1, reps + 1):
            order = TREES if rep % 2 == 1 else TREES[::-1]
            for backend in s.backends:
                for job in jobs:
                    for position, tree in enumerate(order, 1):
                        s.run_one(tree, backend, job, rep, position)
        harness_same = s.trees.harness_identical()
    finally:
        s.close()
    finished = dt.datetime.now(dt.timezone.utc)
    doc: dict[str, Any] = {
        "started_utc": started.isoformat(timespec="seconds"),
        "finished_utc": finished.isoformat(timespec="seconds"),
        "runtime_s": (finished - started).total_seconds(),
        "quick": a.quick,
        "reps": reps,
        "workloads": list(a.workloads),
        "backends": s.backends,
        "size_args": s.sizes,
        "sizes": _sizes_text(s.sizes, a.nprocs),
        "trees": {
            t: {
                **s.trees.info[t],
                "queue_core_files": sorted(s.queue_core_files[t]),
                "imports_outside_tree": s.outside[t],
                "schema_revisions": {b: sorted(v) for b, v in s.schema_revs[t].items()},
            }
            for t in TREES
        },
        "harness_identical": harness_same,
        "defaults_differing": defaults_diff(defaults["base"], defaults["head"]),
        "order": "job by job: base, head in odd reps; head, base in even reps",
        "loadavg_start": load_start,
        "loadavg_end": proc_loadavg(),
        "waited_for_quiet_total_s": s.waited_total,
        "environment": env_info,
        "notes": s.notes,
    }
    doc["summary"] = summarize(s.raw, s.backends, [j.key for j in jobs])
    doc["db_per_task"] = db_per_task(s.raw)
    doc["raw"] = s.raw
    return doc


def _keys_of(doc: dict[str, Any]) -> list[str]:
    """The workload keys of a results file, in the order they ran."""
    keys: dict[str, None] = {}
    for tree in doc["raw"].values():
        for runs in tree.values():
            keys.update(dict.fromkeys(runs))
    return [k for k in METRICS if k in keys]


def _sizes_text(sizes: list[str], nprocs: list[int]) -> str:
    opts = dict(zip(sizes[::2], sizes[1::2], strict=True))
    n_w1 = int(opts.get("--n-w1", 10_000))
    n_w3 = int(opts.get("--n-w3", 10_000))
    w4 = float(opts.get("--w4-seconds", 5.0))
    procs = " and ".join(str(n) for n in nprocs)
    return (
        f"W1 {n_w1:,} single enqueues; W3 {n_w3:,} pre-loaded no-op tasks drained by "
        f"{procs} worker process(es); W4 one task every 10 ms for {w4:g} s, 1 worker"
    )


def _brief(job: runner.Job, res: dict[str, Any]) -> str:
    if not res.get("ok"):
        return f"ERROR {res.get('error')}"
    parts = [f"{name}={res[name]:.4g}" for name, _ in METRICS[job.key] if res.get(name) is not None]
    if job.workload in ("W3", "W4"):
        parts.append(f"lost={res.get('lost')} extra={res.get('extra_executions')}")
    files = res["probe"]["queue_core_files"]
    parts.append(f"queue_core={files[0] if len(files) == 1 else files}")
    parts.append(f"schema={res.get('schema_revision')}")
    return " ".join(parts) + (" NOISY" if res.get("noisy") else "")


# --- summary ---


def summarize(
    raw: dict[str, dict[str, dict[str, list[dict[str, Any]]]]],
    backends: list[str],
    keys: list[str],
) -> list[dict[str, Any]]:
    rows = []
    for backend in backends:
        for key in keys:
            runs = {t: raw.get(t, {}).get(backend, {}).get(key, []) for t in TREES}
            for metric, higher in METRICS[key]:
                rows.append(_row(backend, key, metric, higher, runs))
    return rows


def _row(
    backend: str,
    key: str,
    metric: str,
    higher: bool,
    runs: dict[str, list[dict[str, Any]]],
) -> dict[str, Any]:
    vals = {
        t: {r["rep"]: r[metric] for r in runs[t] if r.get("ok") and r.get(metric) is not None}
        for t in TREES
    }
    row: dict[str, Any] = {
        "backend": backend,
        "workload": key,
        "metric": metric,
        "higher_is_better": higher,
        "primary": METRICS[key][0][0] == metric,
        "failures": {t: [r.get("error") for r in runs[t] if not r.get("ok")] for t in TREES},
        "exactly_once": all(
            r.get("lost") in (0, None) and r.get("extra_executions") in (0, None)
            for t in TREES
            for r in runs[t]
            if r.get("ok")
        ),
    }
    for t in TREES:
        v = list(vals[t].values())
        row[t] = {
            "per_rep": [vals[t].get(rep) for rep in sorted({r["rep"] for r in runs[t]})],
            "median": statistics.median(v) if v else None,
            "min": min(v) if v else None,
            "max": max(v) if v else None,
        }
    b, h = row["base"]["median"], row["head"]["median"]
    if not b or h is None:
        row["ratio"] = row["speed"] = None
        row["verdict"] = "not measured"
        return row
    ratio = h / b
    speed = ratio if higher else 1 / ratio  # head's speed relative to base: < 1 is slower
    row["ratio"] = ratio
    row["speed"] = speed
    row["paired_ratios"] = [
        vals["head"][rep] / vals["base"][rep]
        for rep in sorted(vals["base"])
        if rep in vals["head"] and vals["base"][rep]
    ]
    if higher:
        apart_worse = row["head"]["max"] < row["base"]["min"]
        apart_better = row["head"]["min"] > row["base"]["max"]
    else:
        apart_worse = row["head"]["min"] > row["base"]["max"]
        apart_better = row["head"]["max"] < row["base"]["min"]
    if speed < 1 - TOLERANCE and apart_worse:
        row["verdict"] = "slower, beyond noise"
    elif speed > 1 + TOLERANCE and apart_better:
        row["verdict"] = "faster, beyond noise"
    elif speed < 1 - TOLERANCE:
        row["verdict"] = "slower, within noise"
    else:
        row["verdict"] = "same within noise" if speed <= 1 + TOLERANCE else "faster, within noise"
    return row


DB_COUNTERS = ("xact_commit", "tup_fetched", "tup_returned", "tup_inserted", "tup_updated")


def db_per_task(
    raw: dict[str, dict[str, dict[str, list[dict[str, Any]]]]],
) -> dict[str, dict[str, dict[str, float]]]:
    """PostgreSQL W3: the median per task of each pg_stat_database counter, per tree (each
    tree has a database of its own, so the counters are its alone)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for tree in TREES:
        for key, runs in raw.get(tree, {}).get("postgresql", {}).items():
            per_task = [r["db_per_task"] for r in runs if r.get("ok") and r.get("db_per_task")]
            for counter in DB_COUNTERS:
                vals = [p[counter] for p in per_task if counter in p]
                if vals:
                    out.setdefault(key, {}).setdefault(counter, {})[tree] = statistics.median(vals)
    return out


# --- report ---


def _f(x: float | None) -> str:
    if x is None:
        return "—"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


LABELS = {
    "tasks_per_s": "tasks/s",
    "p50_ms": "p50 ms",
    "p99_ms": "p99 ms",
    "cpu_us_per_task": "worker CPU µs/task",
}


def render_markdown(doc: dict[str, Any]) -> str:
    base, head = doc["trees"]["base"], doc["trees"]["head"]
    dirty = " (with uncommitted changes)" if head.get("dirty") else ""
    lines = [
        f"Run {doc['started_utc']} to {doc['finished_utc']} "
        f"({doc['reps']} rep(s){', quick sizes' if doc['quick'] else ''}, "
        f"{doc['runtime_s'] / 60:.0f} min): base `{base['short']}` ({base['subject'][:70]}), "
        f"head `{head['short']}`{dirty} ({head['subject'][:70]}).",
        "",
        f"Sizes: {doc['sizes']}. Order: {doc['order']}. Load average (`/proc/loadavg`) before: "
        f"`{doc['loadavg_start']}`, after: `{doc['loadavg_end']}`; {_noisy_text(doc)}.",
        "",
        "Trees: every job and worker process imported `queue_core` from its own tree "
        + (
            "(checked in each process as it exited)"
            if not base["imports_outside_tree"] and not head["imports_outside_tree"]
            else f"EXCEPT: {base['imports_outside_tree'] + head['imports_outside_tree']}"
        )
        + "; schema revisions after the jobs: base "
        + ", ".join(f"{b} {'/'.join(v)}" for b, v in base["schema_revisions"].items())
        + "; head "
        + ", ".join(f"{b} {'/'.join(v)}" for b, v in head["schema_revisions"].items())
        + ". Benchmark harness files "
        + ("identical in both trees." if doc["harness_identical"] else "DIFFER between trees.")
        + " "
        + _defaults_text(doc["defaults_differing"]),
        "",
        "| backend | workload | metric | base median (min-max) | head median (min-max) "
        "| head/base | pairs head/base | reading |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in doc["summary"]:
        b, h = row["base"], row["head"]
        pairs = ", ".join(f"{p:.2f}" for p in row.get("paired_ratios", []))
        metric = LABELS.get(row["metric"], row["metric"])
        if row["primary"]:
            metric = f"**{metric}**"
        failures = sum(len(v) for v in row["failures"].values())
        verdict = row["verdict"] + (f"; {failures} failed rep(s)" if failures else "")
        if not row["exactly_once"]:
            verdict += "; LOST OR DUPLICATED TASKS"
        lines.append(
            f"| {row['backend']} | {row['workload']} | {metric} "
            f"| {_f(b['median'])} ({_f(b['min'])}-{_f(b['max'])}) "
            f"| {_f(h['median'])} ({_f(h['min'])}-{_f(h['max'])}) "
            f"| {_f(row['ratio'])} | {pairs} | {verdict} |"
        )
    lines += [
        "",
        "head/base is the ratio of the medians (for tasks/s above 1 is faster, for ms and "
        "µs below 1 is); pairs are the ratios of the two jobs that ran next to each other in "
        f"each rep. A verdict 'beyond noise' needs a change over {TOLERANCE:.0%} and the two "
        "trees' reps not overlapping. The primary metric of each workload is in bold.",
    ]
    if doc.get("db_per_task"):
        lines += [
            "",
            "PostgreSQL W3, per task drained (median; `pg_stat_database` of each tree's own "
            "database, worker start-up and shutdown included), base → head:",
            "",
            "| workload | " + " | ".join(DB_COUNTERS) + " |",
            "|---|" + "---|" * len(DB_COUNTERS),
        ]
        for key, counters in doc["db_per_task"].items():
            cells = [
                f"{_f(c.get('base'))} → {_f(c.get('head'))}"
                for c in (counters.get(name, {}) for name in DB_COUNTERS)
            ]
            lines.append(f"| {key} | " + " | ".join(cells) + " |")
    if doc["notes"]:
        lines += ["", *[f"- {n}" for n in doc["notes"]]]
    return "\n".join(lines) + "\n"


def _noisy_text(doc: dict[str, Any]) -> str:
    runs = [r for tree in doc["raw"].values() for b in tree.values() for k in b.values() for r in k]
    noisy = sum(1 for r in runs if r.get("noisy"))
    return (
        f"{noisy} of {len(runs)} jobs ran while other tenants kept more than the gate's share "
        f"of the CPUs busy (waited {doc.get('waited_for_quiet_total_s', 0):.0f} s for quiet)"
    )


def _defaults_text(diff: dict[str, list[Any]]) -> str:
    """The worker defaults that differ, by value; the constants new in head by count."""
    changed = {k: v for k, v in diff.items() if v[0] is not None and v[1] is not None}
    new = [k for k, v in diff.items() if v[0] is None]
    new_worker = {k: diff[k][1] for k in new if k.startswith("workers.")}
    parts = [f"`{k.rsplit('.', 1)[-1]}` {v[0]} → {v[1]}" for k, v in changed.items()]
    parts += [f"`{k.rsplit('.', 1)[-1]}` = {v} (new)" for k, v in new_worker.items()]
    text = "Each tree ran with its own defaults; worker/queue default constants that differ: "
    text += ", ".join(parts) if parts else "none"
    others = len(new) - len(new_worker)
    if others:
        text += f"; {others} queue constants new in head (flow control, waiting; in the JSON)"
    return text + "."


def update_docs(section: str, path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    start, end = text.index(MARK_START), text.index(MARK_END)
    generated = "<!-- generated by python -m benchmarks.revisions; do not edit -->\n"
    path.write_text(
        text[: start + len(MARK_START)] + "\n" + generated + section + text[end:],
        encoding="utf-8",
    )


def _csv(allowed: tuple[str, ...]):  # type: ignore[no-untyped-def]
    def parse(value: str) -> list[str]:
        items = [v.strip() for v in value.split(",") if v.strip()]
        bad = [v for v in items if v not in allowed]
        if bad:
            raise argparse.ArgumentTypeError(f"{bad} (choose from {', '.join(allowed)})")
        return items

    return parse


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.revisions", description=__doc__)
    ap.add_argument("--base", help="the revision to compare against (required to measure)")
    ap.add_argument("--head", default=".", help="a revision, or '.' for the working tree (default)")
    ap.add_argument("--workloads", type=_csv(WORKLOADS), default=list(WORKLOADS))
    ap.add_argument("--backends", type=_csv(BACKENDS), default=list(BACKENDS))
    ap.add_argument(
        "--nprocs",
        type=lambda v: [int(x) for x in v.split(",")],
        default=[1, 4],
        help="W3 worker processes (default 1,4)",
    )
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="tiny sizes, 1 rep, no quiet gate")
    ap.add_argument("--n-w1", type=int, default=None, help="W1 tasks (default 10,000)")
    ap.add_argument("--n-w3", type=int, default=None, help="W3 tasks (default 10,000)")
    ap.add_argument("--w4-seconds", type=float, default=None, help="W4 length (default 5 s)")
    ap.add_argument("--pg-url", default=None, help=f"default ${runner.PG_ENV}")
    ap.add_argument("--out", type=Path, default=None, help="results JSON")
    ap.add_argument(
        "--docs",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="rewrite the generated block of docs/benchmarks.md (default: full runs to the "
        "default --out)",
    )
    ap.add_argument("--quiet-gate", type=float, default=25.0)
    ap.add_argument("--quiet-max-wait", type=float, default=20.0)
    ap.add_argument("--quiet-wait-budget", type=float, default=180.0)
    ap.add_argument("--silent", action="store_true")
    ap.add_argument(
        "--render",
        type=Path,
        default=None,
        help="measure nothing: re-render the markdown (and with --docs the docs block) of "
        "this results JSON",
    )
    return ap


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    signal.signal(signal.SIGTERM, runner._on_term)  # stops the running job, then cleans up
    out = a.out or (
        RESULTS_DIR / "raw" / "revisions_quick.json" if a.quick else RESULTS_DIR / "revisions.json"
    )
    t0 = time.monotonic()
    if a.render is not None:
        out = a.render
        doc = json.loads(out.read_text())
        doc["summary"] = summarize(doc["raw"], doc["backends"], _keys_of(doc))
        doc["db_per_task"] = db_per_task(doc["raw"])
    elif a.base is None:
        parser().error("--base is required (or --render FILE)")
    else:
        doc = measure(a, Progress(0, enabled=not a.silent))
    md = render_markdown(doc)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1, default=str))
    out.with_suffix(".md").write_text("## Flow control: no regression when unused\n\n" + md)
    if a.docs if a.docs is not None else (not a.quick and a.out is None and not a.render):
        update_docs(md, DOCS_PAGE)
    if not a.silent:
        print(md)
        print(f"wrote {out} and {out.with_suffix('.md')} in {time.monotonic() - t0:.0f} s")
    outside = [w for t in TREES for w in doc["trees"][t]["imports_outside_tree"]]
    failed = any(sum(len(v) for v in row["failures"].values()) for row in doc["summary"])
    return 1 if outside or failed else 0


if __name__ == "__main__":
    sys.exit(main())
