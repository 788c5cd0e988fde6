"""The scale-out test bed: worker hosts on network namespaces around a throwaway PostgreSQL.

    sudo .venv/bin/python -m benchmarks.scaleout            # everything (~10 min)
    sudo .venv/bin/python -m benchmarks.scaleout --quick    # smaller runs (~2 min)
    sudo .venv/bin/python -m benchmarks.scaleout --only partition,skew

Prints a table, writes ``benchmarks/results/scaleout.json`` and ``.md`` and the plots
``docs/img/scaleout_*.png``. Measures (docs/scale-out.md shows and explains the results):

- ``throughput``: drain rate of a backlog of no-op tasks with 1, 2, 3, 4 hosts of 2 worker
  processes each;
- ``latency``: enqueue-to-start latency of a single task on idle workers, woken by
  LISTEN/NOTIFY, against a task inserted without a NOTIFY (found by the idle re-check, at
  most IDLE_SLEEP_MAX_SECONDS later);
- ``idle``: what idle workers cost the database: claims, statements and commits per second
  against the number of idle worker processes;
- ``partition``: one host's cable pulled mid-drain, then plugged back in: lost tasks,
  duplicate executions, time until its leases were recovered, late completions rejected;
- ``skew``: one host's workers with a clock 2 s fast (``PRISMQ_QUEUE_TEST_CLOCK_OFFSET_SECONDS``)
  against the others' leases: premature recoveries and duplicates.

Needs root (``ip netns``) and PostgreSQL's server binaries; it says so and exits otherwise.
The machine has 2 cores shared with everything else: the figures show correctness and the
shape of the curves, not absolute rates.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import text

from benchmarks.netbed import REPO_ROOT, Host, NetBed, unavailable_reason
from benchmarks.scaleout_handlers import RECORDS_ENV
from queue_core import migrate
from queue_core.clock import CLOCK_OFFSET_ENV
from queue_core.database import Database
from queue_core.repositories import TaskRepository
from queue_core.schemas import TaskCreate

HANDLERS = "benchmarks.scaleout_handlers"
RESULTS = REPO_ROOT / "benchmarks" / "results"
IMAGES = REPO_ROOT / "docs" / "img"
WORKERS_PER_HOST = 2
READY_TIMEOUT = 120.0
DRAIN_TIMEOUT = 300.0
ENQUEUE_BATCH = 1000
UNANNOUNCED_SAMPLES = 8  # each waits for the idle re-check: seconds, not milliseconds
IDLE_SETTLE_SECONDS = 12.0
# (clock offset of host h2 in seconds, lease seconds): a control without skew, then 2 s fast
# against leases from the shortest allowed to the default.
SKEW_CASES = ((0.0, 2.0), (2.0, 2.0), (2.0, 3.0), (2.0, 6.0), (2.0, 30.0))
CORES_NOTE = (
    "2-core machine shared with other work: these figures show correctness and the shape of "
    "the curves, not absolute rates."
)


# --- plumbing ----------------------------------------------------------------------------


def wait_until(
    predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.05
) -> float:
    """Seconds it took for ``predicate`` to hold; raises TimeoutError with ``what``."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)
    return time.monotonic() - started


def scalar(db: Database, sql: str, **params: Any) -> Any:
    with db.engine.connect() as conn:
        return conn.execute(text(sql), params).scalar()


def reset_queue(db: Database) -> None:
    with db.engine.begin() as conn:
        conn.execute(text("TRUNCATE task_logs, task_queue, workers RESTART IDENTITY CASCADE"))


def enqueue(db: Database, count: int, type_: str, payload: dict[str, Any]) -> float:
    """Enqueue ``count`` tasks in batches (each NOTIFYs); returns the time of the last commit."""
    tasks = TaskRepository(db)
    for start in range(0, count, ENQUEUE_BATCH):
        n = min(ENQUEUE_BATCH, count - start)
        tasks.enqueue_many([TaskCreate(type=type_, payload=payload) for _ in range(n)])
    return time.time()


def count_status(db: Database, status: str) -> int:
    return int(scalar(db, "SELECT count(*) FROM task_queue WHERE status = :s", s=status))


@dataclass
class Fleet:
    """Worker processes started on some hosts, with their ids and a records directory."""

    bed: NetBed
    worker_ids: list[str]
    records: Path

    def executions(self) -> list[dict[str, Any]]:
        out = []
        for path in sorted(self.records.glob("*.jsonl")):
            for line in path.read_text().splitlines():
                if line.strip():
                    out.append(json.loads(line))
        return out


def start_fleet(
    bed: NetBed,
    db: Database,
    hosts: Sequence[Host],
    *,
    per_host: int = WORKERS_PER_HOST,
    concurrency: int = 1,
    lease_seconds: float = 30.0,
    poll_interval: float = 0.5,
    env_for: Callable[[Host], dict[str, str]] | None = None,
    extra: Sequence[str] = (),
) -> Fleet:
    records = Path(tempfile.mkdtemp(prefix="records-", dir=bed.workdir))
    ids = []
    for host in hosts:
        env = {RECORDS_ENV: str(records), **(env_for(host) if env_for else {})}
        for index in range(1, per_host + 1):
            options = [
                "--concurrency", str(concurrency),
                "--lease-seconds", str(lease_seconds),
                "--poll-interval", str(poll_interval),
                "--shutdown-grace", "2",
                "--log-level", "WARNING",
                *extra,
            ]  # fmt: skip
            bed.spawn_worker(host, index, imports=[HANDLERS], options=options, env=env)
            ids.append(f"{host.name}-w{index}")

    def registered() -> bool:
        _check_alive(bed, hosts)
        with db.engine.connect() as conn:
            found = conn.execute(
                text("SELECT count(*) FROM workers WHERE worker_id = ANY(:ids)"), {"ids": ids}
            ).scalar()
        return found == len(ids)

    wait_until(registered, READY_TIMEOUT, f"{len(ids)} workers to register", interval=0.2)
    return Fleet(bed, ids, records)


def _check_alive(bed: NetBed, hosts: Iterable[Host]) -> None:
    for host in hosts:
        for process in host.processes:
            if process.poll() is not None:
                logs = "\n".join(
                    p.read_text(errors="replace")[-2000:] for p in bed.logs.glob(f"{host.name}-*")
                )
                raise RuntimeError(f"a worker on {host.name} exited early:\n{logs}")


def new_bed(hosts: int) -> NetBed:
    bed = NetBed(hosts)
    bed.start()
    db = Database(bed.admin_url)
    migrate.upgrade(db)
    db.dispose()
    return bed


# --- measurements ------------------------------------------------------------------------


def measure_throughput(bed: NetBed, db: Database, tasks: int, reps: int) -> list[dict[str, Any]]:
    rows = []
    for count in range(1, len(bed.hosts) + 1):
        rates = []
        for _ in range(reps):
            reset_queue(db)
            fleet = start_fleet(bed, db, bed.hosts[:count], concurrency=1)
            started = time.monotonic()
            enqueue(db, tasks, "scaleout.noop", {})
            elapsed = wait_until(
                lambda: count_status(db, "completed") >= tasks, DRAIN_TIMEOUT, "the drain"
            )
            elapsed = time.monotonic() - started
            rates.append(tasks / elapsed)
            bed.stop_processes()
            del fleet
        rows.append(
            {
                "hosts": count,
                "processes": count * WORKERS_PER_HOST,
                "tasks": tasks,
                "tasks_per_second": statistics.median(rates),
                "runs": rates,
            }
        )
        print(f"  throughput {count} host(s): {statistics.median(rates):8.0f} tasks/s", flush=True)
    return rows


def measure_latency(bed: NetBed, db: Database, samples: int) -> dict[str, Any]:
    reset_queue(db)
    fleet = start_fleet(bed, db, bed.hosts[:1], poll_interval=0.5)
    out: dict[str, Any] = {"poll_interval": 0.5, "samples": samples}
    insert_silently = text(
        "INSERT INTO task_queue (type, payload) VALUES ('scaleout.noop', '{}') RETURNING id"
    )
    for mode in ("notify", "unannounced"):
        latencies = []
        for _ in range(samples if mode == "notify" else min(samples, UNANNOUNCED_SAMPLES)):
            # The workers are idle again, waiting; unannounced work is looked for at the idle
            # re-check, so let them settle into their long sleep first.
            time.sleep(0.3 if mode == "notify" else 2.0)
            if mode == "notify":
                before = time.time()
                task_id = TaskRepository(db).enqueue(type="scaleout.noop", payload={}).task.task_id
            else:
                before = time.time()
                with db.engine.begin() as conn:
                    task_id = conn.execute(insert_silently).scalar_one()
            wait_until(
                lambda tid=task_id: (
                    scalar(db, "SELECT status FROM task_queue WHERE id=:i", i=tid) == "completed"
                ),
                30.0,
                f"task {task_id}",
                interval=0.01,
            )
            [start] = [e["start"] for e in fleet.executions() if e["task"] == task_id]
            latencies.append((start - before) * 1000)
        latencies.sort()
        out[mode] = {
            "median_ms": statistics.median(latencies),
            "p90_ms": latencies[int(0.9 * (len(latencies) - 1))],
            "max_ms": latencies[-1],
            "all_ms": latencies,
        }
        print(f"  latency {mode}: median {out[mode]['median_ms']:.1f} ms", flush=True)
    bed.stop_processes()
    return out


# Claims are told by their CTE: pg_stat_statements stores an entry's text normalised (its
# 'leased' becomes $n) when the statement was not prepared yet, which idle workers' rare
# claims never are.
_STATEMENTS = """
SELECT coalesce(sum(calls), 0),
       coalesce(sum(calls) FILTER (WHERE query ILIKE '%WITH picked AS MATERIALIZED%'), 0)
FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = current_database()
"""


def _db_counters(db: Database) -> tuple[int, int, int]:
    with db.engine.connect() as conn:
        commits = conn.execute(
            text("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
        ).scalar_one()
        calls, claims = conn.execute(text(_STATEMENTS)).one()
    return int(commits), int(calls), int(claims)


def measure_idle(
    bed: NetBed, db: Database, counts: Sequence[int], window: float, poll_interval: float = 0.5
) -> list[dict[str, Any]]:
    rows = []
    for count in counts:
        reset_queue(db)
        if count:
            per_host = max(1, count // len(bed.hosts))
            hosts = bed.hosts[: max(1, count // per_host)]
            start_fleet(bed, db, hosts, per_host=per_host, poll_interval=poll_interval)
        # Start-up settles, and its transactions reach pg_stat_database: an idle backend
        # flushes its counters only after PostgreSQL's 10 s idle interval.
        time.sleep(IDLE_SETTLE_SECONDS)
        with db.engine.connect() as conn:
            conn.execute(text("SELECT pg_stat_statements_reset()"))
            conn.commit()
        time.sleep(0.5)  # pg_stat_database is flushed by backends at most every 500 ms
        c0, s0, k0 = _db_counters(db)
        time.sleep(window)
        c1, s1, k1 = _db_counters(db)
        # the controller's own two counter queries are in the totals: a handful per window
        row = {
            "idle_workers": count,
            "poll_interval": poll_interval,
            "claims_per_second": (k1 - k0) / window,
            "statements_per_second": (s1 - s0) / window,
            "commits_per_second": (c1 - c0) / window,
            "window_seconds": window,
        }
        rows.append(row)
        print(
            f"  idle {count:2d} workers, poll {poll_interval:g} s: "
            f"{row['claims_per_second']:6.1f} claims/s "
            f"{row['statements_per_second']:6.1f} statements/s "
            f"{row['commits_per_second']:6.1f} commits/s",
            flush=True,
        )
        bed.stop_processes()
    return rows


def _connections_from(db: Database, address: str) -> int:
    return int(
        scalar(
            db,
            "SELECT count(*) FROM pg_stat_activity WHERE client_addr = CAST(:a AS inet)",
            a=address,
        )
    )


def measure_connections(
    bed: NetBed, db: Database, tasks: int, concurrencies: Sequence[int] = (1, 4)
) -> list[dict[str, Any]]:
    """Server connections per worker process, idle and at most while draining."""
    rows = []
    host = bed.hosts[0]
    for concurrency in concurrencies:
        reset_queue(db)
        start_fleet(bed, db, [host], concurrency=concurrency)
        time.sleep(2.0)
        idle = _connections_from(db, host.address)
        enqueue(db, tasks, "scaleout.noop", {})
        busiest = 0

        def drained() -> bool:
            nonlocal busiest
            busiest = max(busiest, _connections_from(db, host.address))
            return count_status(db, "completed") >= tasks

        wait_until(drained, DRAIN_TIMEOUT, "the drain", interval=0.02)
        row = {
            "concurrency": concurrency,
            "processes": WORKERS_PER_HOST,
            "idle_per_process": idle / WORKERS_PER_HOST,
            "busy_max_per_process": busiest / WORKERS_PER_HOST,
        }
        rows.append(row)
        print(f"  connections: {row}", flush=True)
        bed.stop_processes()
    return rows


def run_partition(
    bed: NetBed,
    db: Database,
    *,
    tasks: int = 400,
    task_seconds: float = 0.1,
    lease_seconds: float = 2.0,
    cut_after_fraction: float = 0.2,
    down_seconds: float | None = None,
) -> dict[str, Any]:
    """Pull one host's cable mid-drain, plug it back after its leases were recovered."""
    reset_queue(db)
    victim = bed.hosts[1]
    fleet = start_fleet(bed, db, bed.hosts, concurrency=2, lease_seconds=lease_seconds)
    enqueue(db, tasks, "scaleout.sleep", {"seconds": task_seconds})
    wait_until(
        lambda: count_status(db, "completed") >= tasks * cut_after_fraction,
        DRAIN_TIMEOUT,
        "the drain to get going",
    )
    victim_ids = [w for w in fleet.worker_ids if w.startswith(f"{victim.name}-")]
    bed.cut(victim)
    cut_at = time.time()
    cut_monotonic = time.monotonic()
    held = _held_by(db, victim_ids)
    recovered_after = wait_until(
        lambda: not _held_by(db, victim_ids) & held, DRAIN_TIMEOUT, "recovery", interval=0.05
    )
    recovery_seconds = time.monotonic() - cut_monotonic
    del recovered_after
    down = down_seconds if down_seconds is not None else lease_seconds
    time.sleep(max(0.0, cut_monotonic + recovery_seconds + down - time.monotonic()))
    bed.reconnect(victim)
    reconnected_at = time.time()
    wait_until(lambda: count_status(db, "completed") >= tasks, DRAIN_TIMEOUT, "the drain to finish")
    # Let the victim's workers reconnect and try to record what they ran while cut off.
    time.sleep(min(10.0, 3 * lease_seconds))
    bed.stop_processes()
    return _partition_report(db, fleet, victim_ids, held, cut_at, reconnected_at, tasks) | {
        "tasks": tasks,
        "task_seconds": task_seconds,
        "lease_seconds": lease_seconds,
        "held_at_cut": len(held),
        "recovery_seconds": recovery_seconds,
    }


def _held_by(db: Database, worker_ids: Sequence[str]) -> set[int]:
    with db.engine.connect() as conn:
        return set(
            conn.execute(
                text("SELECT id FROM task_queue WHERE status = 'leased' AND locked_by = ANY(:ids)"),
                {"ids": list(worker_ids)},
            ).scalars()
        )


def _partition_report(
    db: Database,
    fleet: Fleet,
    victim_ids: Sequence[str],
    held: set[int],
    cut_at: float,
    reconnected_at: float,
    tasks: int,
) -> dict[str, Any]:
    with db.engine.connect() as conn:
        rows = conn.execute(text("SELECT id, status, attempts, result FROM task_queue")).all()
    executions = fleet.executions()
    by_task: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for e in executions:
        by_task[e["task"]].append(e)
    completed = {r.id for r in rows if r.status == "completed"}
    duplicates = {t for t, runs in by_task.items() if len(runs) > 1}
    # A result must come from the last attempt: an earlier attempt's late completion (the
    # cut-off host's, once it is back) is refused by the lease token.
    stale_results = [
        r.id
        for r in rows
        if r.result is not None
        and by_task.get(r.id)
        and r.result["attempt"] != max(e["attempt"] for e in by_task[r.id])
    ]
    late_runs = [
        e
        for e in executions
        if e["worker"] in victim_ids
        and e["end"] > cut_at
        and e["attempt"] < max(x["attempt"] for x in by_task[e["task"]])
    ]
    return {
        "lost": tasks - len(completed),
        "not_completed": sorted(r.id for r in rows if r.status != "completed")[:10],
        "executions": len(executions),
        "duplicates": len(duplicates),
        "duplicates_outside_held": sorted(duplicates - held)[:10],
        "late_completions_rejected": len(late_runs),
        "stale_results": stale_results[:10],
        "down_seconds": reconnected_at - cut_at,
    }


def run_skew(
    bed: NetBed,
    db: Database,
    *,
    offset_seconds: float = 2.0,
    lease_seconds: float = 3.0,
    tasks: int = 40,
    task_seconds: float = 1.5,
) -> dict[str, Any]:
    """Host h2's workers run with a clock ``offset_seconds`` fast; count early recoveries."""
    reset_queue(db)
    fast = bed.hosts[1]

    def env_for(host: Host) -> dict[str, str]:
        return {CLOCK_OFFSET_ENV: str(offset_seconds)} if host is fast else {}

    fleet = start_fleet(
        bed, db, bed.hosts[:2], concurrency=2, lease_seconds=lease_seconds, env_for=env_for
    )
    enqueue(db, tasks, "scaleout.sleep", {"seconds": task_seconds})
    wait_until(lambda: count_status(db, "completed") >= tasks, DRAIN_TIMEOUT, "the drain")
    time.sleep(lease_seconds)
    bed.stop_processes()
    with db.engine.connect() as conn:
        recoveries = conn.execute(
            text(
                "SELECT count(*) FROM task_logs WHERE message ILIKE '%expired%' "
                "OR message ILIKE '%recovered%'"
            )
        ).scalar_one()
        lost = (
            tasks
            - conn.execute(
                text("SELECT count(*) FROM task_queue WHERE status = 'completed'")
            ).scalar_one()
        )
    runs = Counter(e["task"] for e in fleet.executions())
    return {
        "offset_seconds": offset_seconds,
        "lease_seconds": lease_seconds,
        "tasks": tasks,
        "task_seconds": task_seconds,
        "recoveries": int(recoveries),
        "duplicates": sum(1 for n in runs.values() if n > 1),
        "lost": int(lost),
    }


# --- report ------------------------------------------------------------------------------


def render_markdown(results: dict[str, Any]) -> str:
    lines = [f"# Scale-out test bed, {results['started']}", "", f"*{CORES_NOTE}*", ""]
    if "throughput" in results:
        lines += ["| hosts | worker processes | tasks | tasks/s (median) |", "|---|---|---|---|"]
        for r in results["throughput"]:
            lines.append(
                f"| {r['hosts']} | {r['processes']} | {r['tasks']} | {r['tasks_per_second']:.0f} |"
            )
        lines.append("")
    if "latency" in results:
        lat = results["latency"]
        lines += ["| wake-up | median ms | p90 ms | max ms |", "|---|---|---|---|"]
        for mode in ("notify", "unannounced"):
            m = lat[mode]
            lines.append(
                f"| {mode} | {m['median_ms']:.1f} | {m['p90_ms']:.1f} | {m['max_ms']:.1f} |"
            )
        lines.append("")
    if "idle" in results:
        lines += [
            "| idle workers | poll interval s | claims/s | statements/s | commits/s |",
            "|---|---|---|---|---|",
        ]
        for r in results["idle"]:
            lines.append(
                f"| {r['idle_workers']} | {r.get('poll_interval', 0.5):g} | "
                f"{r['claims_per_second']:.1f} | "
                f"{r['statements_per_second']:.1f} | {r['commits_per_second']:.1f} |"
            )
        lines.append("")
    if "idle_before" in results:
        before = results["idle_before"]
        lines += [
            f"Before ({before['revision']}, the same bed and method):",
            "",
            "| idle workers | claims/s | statements/s | commits/s |",
            "|---|---|---|---|",
        ]
        for r in before["rows"]:
            lines.append(
                f"| {r['idle_workers']} | {r['claims_per_second']:.1f} | "
                f"{r['statements_per_second']:.1f} | {r['commits_per_second']:.1f} |"
            )
        lines.append("")
    if "connections" in results:
        lines += [
            "| concurrency | connections per process, idle | at most, draining |",
            "|---|---|---|",
        ]
        for r in results["connections"]:
            lines.append(
                f"| {r['concurrency']} | {r['idle_per_process']:g} | "
                f"{r['busy_max_per_process']:g} |"
            )
        lines.append("")
    if "partition" in results:
        p = results["partition"]
        lines += [
            "| partition | value |",
            "|---|---|",
            *(f"| {k} | {v:.2f} |" if isinstance(v, float) else f"| {k} | {v} |"
              for k, v in p.items()),
            "",
        ]  # fmt: skip
    if "skew" in results:
        lines += [
            "| clock offset s | lease s | tasks | premature recoveries | duplicates | lost |",
            "|---|---|---|---|---|---|",
        ]
        for r in results["skew"]:
            lines.append(
                f"| {r['offset_seconds']:g} | {r['lease_seconds']:g} | {r['tasks']} | "
                f"{r['recoveries']} | {r['duplicates']} | {r['lost']} |"
            )
        lines.append("")
    return "\n".join(lines)


def plot(results: dict[str, Any]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    IMAGES.mkdir(parents=True, exist_ok=True)
    written = []
    if "throughput" in results:
        rows = results["throughput"]
        fig, ax = plt.subplots(figsize=(6, 3.6))
        ax.plot([r["hosts"] for r in rows], [r["tasks_per_second"] for r in rows], marker="o")
        ax.set_xlabel("worker hosts (2 processes each)")
        ax.set_ylabel("drain rate, tasks/s")
        ax.set_xticks([r["hosts"] for r in rows])
        ax.set_ylim(bottom=0)
        ax.set_title("Drain throughput vs hosts (PostgreSQL)")
        fig.text(0.01, 0.01, CORES_NOTE, fontsize=6)
        fig.tight_layout(rect=(0, 0.04, 1, 1))
        written.append(IMAGES / "scaleout_throughput.png")
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)
    if "latency" in results:
        lat = results["latency"]
        fig, ax = plt.subplots(figsize=(6, 3.6))
        ax.boxplot([lat["notify"]["all_ms"], lat["unannounced"]["all_ms"]])
        ax.set_xticks([1, 2], ["LISTEN/NOTIFY", "no NOTIFY (idle re-check)"])
        ax.set_yscale("log")
        ax.set_ylabel("enqueue-to-start, ms")
        ax.set_title("Wake-up latency of an idle worker")
        fig.text(0.01, 0.01, CORES_NOTE, fontsize=6)
        fig.tight_layout(rect=(0, 0.04, 1, 1))
        written.append(IMAGES / "scaleout_latency.png")
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)
    if "idle" in results:
        rows = [r for r in results["idle"] if r.get("poll_interval", 0.5) == 0.5]
        fig, ax = plt.subplots(figsize=(6, 3.6))
        xs = [r["idle_workers"] for r in rows]
        series = (
            ("claims_per_second", "claim statements/s"),
            ("statements_per_second", "all statements/s"),
            ("commits_per_second", "commits/s"),
        )
        for (key, label), colour in zip(series, ("C0", "C1", "C2"), strict=True):
            ax.plot(xs, [r[key] for r in rows], marker="o", color=colour, label=label)
        before = results.get("idle_before", {})  # the same bed on an earlier revision
        for (key, label), colour in zip(series, ("C0", "C1", "C2"), strict=True) if before else ():
            old = before["rows"]
            ax.plot(
                [r["idle_workers"] for r in old],
                [r[key] for r in old],
                linestyle="--",
                color=colour,
                label=f"{label}, {before['revision']}",
            )
        ax.set_xlabel("idle worker processes (--poll-interval 0.5 s)")
        ax.set_ylabel("per second")
        ax.set_title("Database load from idle workers")
        ax.legend()
        fig.text(0.01, 0.01, CORES_NOTE, fontsize=6)
        fig.tight_layout(rect=(0, 0.04, 1, 1))
        written.append(IMAGES / "scaleout_idle.png")
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scaleout", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller runs")
    parser.add_argument(
        "--only",
        default="throughput,latency,idle,connections,partition,skew",
        help="comma-separated subset of: throughput, latency, idle, connections, partition, skew",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the JSON and .md go")
    parser.add_argument("--no-plots", action="store_true")
    args = parser.parse_args(argv)
    reason = unavailable_reason()
    if reason is not None:
        print(f"skipped: {reason}", file=sys.stderr)
        return 2
    wanted = {w.strip() for w in args.only.split(",") if w.strip()}
    # SIGTERM (timeout, kill) unwinds like Ctrl+C, so the finally below tears the bed down.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results: dict[str, Any] = {
        "started": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "note": CORES_NOTE,
    }
    bed = new_bed(4)
    db = Database(bed.admin_url)
    try:
        if "throughput" in wanted:
            results["throughput"] = measure_throughput(
                bed, db, tasks=1000 if args.quick else 3000, reps=1 if args.quick else 2
            )
        if "latency" in wanted:
            results["latency"] = measure_latency(bed, db, samples=10 if args.quick else 30)
        if "idle" in wanted:
            counts = (0, 2, 4, 8) if args.quick else (0, 2, 4, 8, 16)
            window = 10.0 if args.quick else 20.0
            results["idle"] = measure_idle(bed, db, counts, window)
        if "connections" in wanted:
            results["connections"] = measure_connections(bed, db, tasks=1000)
        if "partition" in wanted:
            results["partition"] = run_partition(bed, db)
            print(f"  partition: {results['partition']}", flush=True)
        if "skew" in wanted:
            results["skew"] = []
            for offset, lease in SKEW_CASES:
                row = run_skew(bed, db, offset_seconds=offset, lease_seconds=lease)
                results["skew"].append(row)
                print(f"  skew: {row}", flush=True)
    finally:
        db.dispose()
        bed.close()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scaleout.json").write_text(json.dumps(results, indent=2) + "\n")
    markdown = render_markdown(results)
    (args.out / "scaleout.md").write_text(markdown + "\n")
    print(markdown)
    if not args.no_plots:
        for path in plot(results):
            print(f"wrote {path.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
