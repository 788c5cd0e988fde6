"""Medians, spreads, ratios, the targets of issue 7, and the markdown tables.

``python -m benchmarks.report [RESULTS.json] [--docs docs/benchmarks.md]`` re-renders the
markdown from a results file (and the results section of the docs page).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from benchmarks.systems import PRISMQ, SYSTEMS

RAW_SQLITE = "raw_sqlite3"
RAW_PG = "raw_psycopg"
AUDIT_FAILURES_VARIANT = "audit-failures"
"""W1 with ``PRISMQ_QUEUE_AUDIT=failures`` (issue 11 D); the default key runs ``full``."""
SQLITE_ACK_PEERS = ("persist_queue_ack", "litequeue")

# (key, metrics[(name, higher_is_better)])
METRICS: dict[str, list[tuple[str, bool]]] = {
    "W1_enqueue": [("tasks_per_s", True), ("p50_ms", False), ("p99_ms", False)],
    "W2_batch_enqueue": [("tasks_per_s", True)],
    "W3_drain_1proc": [("tasks_per_s", True)],
    "W3_drain_4proc": [("tasks_per_s", True)],
    "W4_latency": [("p50_ms", False), ("p99_ms", False)],
}

REFERENCE_RUN = "20261128-031656"
"""The peers' own full run (../shared/peers/results/latest.md), 3 reps on this kind of
machine. Used for a peer only when it could not run here; compared through its ratio to the
raw loop of that run, since absolute figures of two runs on a shared machine do not compare."""
REFERENCE: dict[str, dict[str, float]] = {
    "raw_sqlite3": {"W3_drain_1proc": 16_637, "W3_drain_4proc": 15_981},
    "persist_queue_ack": {"W3_drain_1proc": 1_580, "W3_drain_4proc": 1_485},
    "litequeue": {"W3_drain_1proc": 1_301, "W3_drain_4proc": 1_271},
    "raw_psycopg": {"W3_drain_1proc": 1_440, "W3_drain_4proc": 2_980},
    "pgqueuer": {"W3_drain_1proc": 4_917, "W3_drain_4proc": 6_100},
}


def base_key(key: str) -> str:
    """``W3_drain_4proc[c8]`` -> ``W3_drain_4proc``."""
    return key.split("[", 1)[0]


def metrics_of(key: str) -> list[tuple[str, bool]]:
    return METRICS[base_key(key)]


# --- aggregation ---


def aggregate(raw: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, Any]:
    """raw[system][key] = per-rep results -> medians, spreads, correctness, ratios."""
    summary: dict[str, Any] = {}
    for system, keys in raw.items():
        for key, runs in keys.items():
            s = summary.setdefault(system, {}).setdefault(key, {})
            oks = [r for r in runs if r.get("ok")]
            if oks and all(r.get("na") for r in oks):
                s["na"] = oks[0]["reason"]
                continue
            skipped = [r for r in runs if r.get("skipped")]
            if skipped and not oks:
                s["skipped"] = skipped[0].get("error")
                continue
            s["failures"] = [r.get("error") for r in runs if not r.get("ok")]
            s["noisy_reps"] = sum(1 for r in runs if r.get("noisy"))
            for name, higher in metrics_of(key):
                vals = [r[name] for r in oks if r.get(name) is not None]
                if not vals:
                    continue
                med = statistics.median(vals)
                s[name] = {
                    "median": med,
                    "min": min(vals),
                    "max": max(vals),
                    "spread_pct": (max(vals) - min(vals)) / med * 100 if med else None,
                    "values": vals,
                    "higher_is_better": higher,
                }
            if key.startswith(("W3", "W4")):
                s["correctness"] = {
                    "lost_per_rep": [r.get("lost") for r in oks],
                    "extra_executions_per_rep": [r.get("extra_executions") for r in oks],
                    "status_per_rep": [r.get("status") for r in oks],
                    "busy_lines_per_rep": [r.get("busy_lines", 0) for r in oks],
                    "busy_errors_per_rep": [
                        r.get("worker_stats", {}).get("busy_errors", 0) for r in oks
                    ],
                    "log_error_lines_per_rep": [r.get("log_error_lines") for r in oks],
                }
                checks = [r for r in oks if "db_all_completed" in r]
                if checks:
                    s["correctness"]["db_all_completed_per_rep"] = [
                        r["db_all_completed"] for r in checks
                    ]
                    s["correctness"]["db_logs_complete_per_rep"] = [
                        r["db_logs_complete"] for r in checks
                    ]
                _aggregate_cost(s, oks)
                notes = sorted({r["worker_note"] for r in oks if r.get("worker_note")})
                if notes:
                    s["worker_note"] = notes[0]
    _add_ratios(summary)
    return summary


def _aggregate_cost(s: dict[str, Any], oks: list[dict[str, Any]]) -> None:
    """Medians of the per-task costs a W3 job measured: worker CPU, PostgreSQL counters."""
    cpu = [r["cpu_us_per_task"] for r in oks if r.get("cpu_us_per_task") is not None]
    if cpu:
        s["cpu_us_per_task"] = statistics.median(cpu)
    per_task = [r["db_per_task"] for r in oks if r.get("db_per_task")]
    if per_task:
        s["db_per_task"] = {
            k: statistics.median(d[k] for d in per_task if k in d) for k in per_task[0]
        }


def _add_ratios(summary: dict[str, Any]) -> None:
    for system, keys in summary.items():
        is_pg = _backend(system) == "postgresql"
        for key, s in keys.items():
            for name, m in s.items():
                if not isinstance(m, dict) or "median" not in m:
                    continue
                bases = [(RAW_SQLITE, "ratio_vs_raw_sqlite3")]
                if is_pg:
                    bases.append((RAW_PG, "ratio_vs_raw_psycopg"))
                for base, field in bases:
                    b = summary.get(base, {}).get(base_key(key), {}).get(name)
                    if b and b.get("median"):
                        m[field] = m["median"] / b["median"]


def _backend(system: str) -> str:
    from benchmarks.systems import system_class

    return system_class(system).BACKEND if system in SYSTEMS else "?"


# --- targets ---


def _median(summary: dict[str, Any], system: str, key: str, metric: str) -> float | None:
    m = summary.get(system, {}).get(key, {}).get(metric)
    return m["median"] if m else None


def _prismq_w3_keys(summary: dict[str, Any], system: str, nproc: int) -> list[str]:
    base = f"W3_drain_{nproc}proc"
    return [k for k in summary.get(system, {}) if base_key(k) == base]


def _target(
    target_id: str, what: str, goal: str, measured: str, met: bool | None, note: str = ""
) -> dict[str, Any]:
    return {
        "id": target_id,
        "what": what,
        "target": goal,
        "measured": measured,
        "met": met,
        "note": note,
    }


def _ratio_target(
    summary: dict[str, Any],
    target_id: str,
    what: str,
    system: str,
    key: str,
    base: str,
    minimum: float,
) -> dict[str, Any]:
    value = _median(summary, system, key, "tasks_per_s")
    ref = _median(summary, base, base_key(key), "tasks_per_s")
    goal = f">= {minimum:g}x {base}"
    if value is None or ref is None:
        return _target(target_id, what, goal, "not measured", None)
    ratio = value / ref
    return _target(
        target_id,
        what,
        goal,
        f"{ratio:.2f}x ({value:,.0f} vs {ref:,.0f} tasks/s)",
        ratio >= minimum,
    )


def _peer_target(
    summary: dict[str, Any],
    target_id: str,
    what: str,
    system: str,
    key: str,
    peers: Iterable[str],
    factor: float,
    raw: str,
) -> dict[str, Any]:
    """prismq >= factor x the fastest of ``peers``: same-run medians when the peers ran here,
    otherwise the reference run's peer/raw ratio against this run's prismq/raw ratio."""
    goal = f">= {factor:g}x the fastest of {', '.join(peers)}"
    value = _median(summary, system, key, "tasks_per_s")
    if value is None:
        return _target(target_id, what, goal, "not measured", None)
    same_run = {p: _median(summary, p, base_key(key), "tasks_per_s") for p in peers}
    measured_here = {p: v for p, v in same_run.items() if v is not None}
    if measured_here:
        best = max(measured_here, key=lambda p: measured_here[p])
        ratio = value / measured_here[best]
        note = "peer measured in this run"
        missing = sorted(set(peers) - set(measured_here))
        if missing:
            note += f"; not run here: {', '.join(missing)}"
        return _target(
            target_id,
            what,
            goal,
            f"{ratio:.2f}x {best} ({value:,.0f} vs {measured_here[best]:,.0f} tasks/s)",
            ratio >= factor,
            note,
        )
    raw_here = _median(summary, raw, base_key(key), "tasks_per_s")
    ref_raw = REFERENCE[raw][base_key(key)]
    best = max(peers, key=lambda p: REFERENCE[p][base_key(key)])
    ref_ratio = REFERENCE[best][base_key(key)] / ref_raw
    if raw_here is None:
        return _target(target_id, what, goal, "not measured (no raw loop either)", None)
    ours = value / raw_here
    return _target(
        target_id,
        what,
        goal,
        f"{ours / ref_ratio:.2f}x {best} (vs {raw}: ours {ours:.3f}, {best} {ref_ratio:.3f})",
        ours >= factor * ref_ratio,
        f"{best} not installed: its figure is from the peers' run {REFERENCE_RUN}, compared "
        f"through the ratio to {raw} of each run",
    )


def targets(summary: dict[str, Any], raw: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 7's targets next to what this run measured."""
    out: list[dict[str, Any]] = []
    sq, pg = "prismq_sqlite", "prismq_pg"
    out.append(
        _ratio_target(
            summary, "W1", "W1 single enqueue (SQLite)", sq, "W1_enqueue", RAW_SQLITE, 0.5
        )
    )
    out.append(
        _ratio_target(
            summary, "W2", "W2 batch enqueue (SQLite)", sq, "W2_batch_enqueue", RAW_SQLITE, 0.5
        )
    )
    for key in _prismq_w3_keys(summary, sq, 4):
        label = f"W3 drain, 4 processes (SQLite){_variant_label(key)}"
        out.append(_ratio_target(summary, "W3-raw", label, sq, key, RAW_SQLITE, 0.5))
        out.append(
            _peer_target(summary, "W3-peers", label, sq, key, SQLITE_ACK_PEERS, 3.0, RAW_SQLITE)
        )
    p50 = _median(summary, sq, "W4_latency", "p50_ms")
    out.append(
        _target(
            "W4",
            "W4 enqueue-to-start latency p50 (SQLite)",
            "<= 2 ms",
            "not measured" if p50 is None else f"{p50:.2f} ms",
            None if p50 is None else p50 <= 2.0,
        )
    )
    for key in _prismq_w3_keys(summary, pg, 4):
        label = f"W3 drain, 4 processes (PostgreSQL){_variant_label(key)}"
        out.append(_peer_target(summary, "PG-W3", label, pg, key, ("pgqueuer",), 1.0, RAW_PG))
    out.append(
        _ratio_target(
            summary, "PG-W1", "W1 single enqueue (PostgreSQL)", pg, "W1_enqueue", RAW_PG, 0.8
        )
    )
    busy = _prismq_busy(raw)
    out.append(
        _target(
            "BUSY",
            "SQLITE_BUSY / 'database is locked' in prismq-queue worker logs and producers",
            "0",
            "not measured" if busy is None else str(busy),
            None if busy is None else busy == 0,
        )
    )
    lost, extra, db_ok = _prismq_correctness(raw)
    out.append(
        _target(
            "ONCE",
            "every task ran exactly once (W3, W4; prismq-queue)",
            "lost 0, duplicates 0",
            "not measured" if lost is None else f"lost {lost}, duplicates {extra}",
            None if lost is None else lost == 0 and extra == 0,
            ""
            if db_ok is None
            else (
                "database: every task completed and every transition logged"
                if db_ok
                else "database check FAILED: see db_status_counts / db_log_counts"
            ),
        )
    )
    return out


def _variant_label(key: str) -> str:
    if "[" not in key:
        return ", worker defaults"
    return f", variant {key.split('[', 1)[1].rstrip(']')}"


def _prismq_runs(raw: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        r
        for system in PRISMQ
        for key, runs in raw.get(system, {}).items()
        for r in runs
        if key.startswith(("W3", "W4")) and r.get("ok")
    ]


def _prismq_busy(raw: dict[str, Any]) -> int | None:
    runs = _prismq_runs(raw)
    producer_busy = sum(
        1
        for system in PRISMQ
        for runs_ in raw.get(system, {}).values()
        for r in runs_
        if not r.get("ok") and re.search(r"locked|busy", str(r.get("error")), re.I)
    )
    if not runs and not producer_busy:
        return None
    return int(sum(r.get("busy_lines", 0) for r in runs)) + producer_busy


def _prismq_correctness(raw: dict[str, Any]) -> tuple[int | None, int | None, bool | None]:
    runs = _prismq_runs(raw)
    if not runs:
        return None, None, None
    lost = sum(r.get("lost", 0) for r in runs)
    extra = sum(r.get("extra_executions", 0) for r in runs)
    checks = [r for r in runs if "db_all_completed" in r]
    db_ok = all(r["db_all_completed"] and r["db_logs_complete"] for r in checks) if checks else None
    return lost, extra, db_ok


# --- markdown ---


def fmt(x: float | None) -> str:
    if x is None:
        return "—"
    if x >= 1000:
        return f"{x:,.0f}"
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    if x >= 1:
        return f"{x:.2f}"
    return f"{x:.3f}"


def _columns(summary: dict[str, Any]) -> list[tuple[str, str]]:
    cols = []
    for key in METRICS:
        if any(key in keys for keys in summary.values()):
            cols += [(key, name) for name, _ in METRICS[key]]
    return cols


def _row_labels(summary: dict[str, Any], system: str) -> list[tuple[str, str | None]]:
    keys = summary.get(system, {})
    variants = sorted({k.split("[", 1)[1].rstrip("]") for k in keys if "[" in k})
    return [(system, None)] + [(f"{system} [{v}]", v) for v in variants]


def render_compact(summary: dict[str, Any], order: list[str]) -> str:
    cols = _columns(summary)
    head = ["system"] + [f"{k} {m}" for k, m in cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for system in order:
        if system not in summary:
            continue
        for label, variant in _row_labels(summary, system):
            cells = []
            for key, name in cols:
                k = key if variant is None else f"{key}[{variant}]"
                s = summary[system].get(k)
                if s is None:
                    cells.append("")
                elif "na" in s:
                    cells.append("n/a")
                elif "skipped" in s:
                    cells.append("skipped")
                elif name not in s:
                    cells.append("FAILED")
                else:
                    m = s[name]
                    ratio = m.get("ratio_vs_raw_sqlite3")
                    pg_ratio = m.get("ratio_vs_raw_psycopg")
                    r = "" if ratio is None else f"{ratio:.2f}x"
                    if pg_ratio is not None and system != RAW_PG:
                        r += f"; {pg_ratio:.2f}x pg"
                    star = "*" * s.get("noisy_reps", 0)
                    spread = m["spread_pct"]
                    cells.append(
                        f"{fmt(m['median'])} ±{spread:.0f}% ({r}){star}"
                        if spread is not None
                        else fmt(m["median"])
                    )
            if any(cells):
                lines.append(
                    "| "
                    + " | ".join([f"**{label}**" if system in PRISMQ else label, *cells])
                    + " |"
                )
    return "\n".join(lines)


def targets_issue11(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 11's targets (worker CLI defaults), ratios taken from this run's medians."""
    sq, pg = "prismq_sqlite", "prismq_pg"
    out = [
        _ratio_target(
            summary, "11-SQ-W3-4", "SQLite W3, 4 processes", sq, "W3_drain_4proc", RAW_SQLITE, 1.0
        ),
        _ratio_target(
            summary, "11-SQ-W3-1", "SQLite W3, 1 process", sq, "W3_drain_1proc", RAW_SQLITE, 1.0
        ),
        _ratio_target(
            summary,
            "11-PG-W3-4",
            "PostgreSQL W3, 4 processes",
            pg,
            "W3_drain_4proc",
            "pgqueuer",
            1.5,
        ),
        _ratio_target(
            summary,
            "11-PG-W3-1",
            "PostgreSQL W3, 1 process",
            pg,
            "W3_drain_1proc",
            "pgqueuer",
            1.0,
        ),
    ]
    for key, minimum, audit in (
        ("W1_enqueue", 0.35, "full"),
        (f"W1_enqueue[{AUDIT_FAILURES_VARIANT}]", 0.45, "failures"),
    ):
        t = _ratio_target(
            summary, f"11-SQ-W1-{audit}", f"SQLite W1, audit {audit}", sq, key, RAW_SQLITE, minimum
        )
        out.append(t)
    p50 = _median(summary, sq, "W4_latency", "p50_ms")
    out.append(
        _target(
            "11-SQ-W4",
            "W4 p50 (SQLite)",
            "<= 1.5 ms",
            "not measured" if p50 is None else f"{p50:.2f} ms",
            None if p50 is None else p50 <= 1.5,
        )
    )
    ours = _median(summary, pg, "W4_latency", "p50_ms")
    theirs = _median(summary, "pgqueuer", "W4_latency", "p50_ms")
    out.append(
        _target(
            "11-PG-W4",
            "W4 p50 (PostgreSQL)",
            "<= pgqueuer's",
            "not measured"
            if ours is None or theirs is None
            else f"{ours:.2f} ms vs {theirs:.2f} ms ({ours / theirs:.2f}x)",
            None if ours is None or theirs is None else ours <= theirs,
        )
    )
    return out


def render_cost(summary: dict[str, Any], order: list[str]) -> str:
    """Per task in W3: worker CPU, and on PostgreSQL the server's counters."""
    lines = [
        "| system | job | worker CPU us/task | commits/task | rows ins/upd/del per task | "
        "rows read/task | WAL records/task | WAL fsyncs/task (server-wide) |",
        "|---|---|---:|---:|---|---:|---:|---:|",
    ]
    for system in order:
        for key, s in summary.get(system, {}).items():
            cpu, db = s.get("cpu_us_per_task"), s.get("db_per_task")
            if cpu is None and not db:
                continue
            db = db or {}

            def g(name: str, db: dict[str, float] = db) -> str:
                v = db.get(name)
                return "" if v is None else f"{v:.2f}"

            rows = "/".join(g(k) or "-" for k in ("tup_inserted", "tup_updated", "tup_deleted"))
            read = (
                f"{db['tup_returned'] + db['tup_fetched']:.1f}"
                if "tup_returned" in db and "tup_fetched" in db
                else ""
            )
            lines.append(
                f"| {system} | {key} | {'' if cpu is None else f'{cpu:.0f}'} | "
                f"{g('xact_commit')} | {rows if db else ''} | {read} | {g('wal_records')} | "
                f"{g('wal_sync')} |"
            )
    return "\n".join(lines)


def render_targets(rows: list[dict[str, Any]]) -> str:
    lines = ["| target | goal | measured | met | note |", "|---|---|---|---|---|"]
    for t in rows:
        met = {True: "yes", False: "**no**", None: "—"}[t["met"]]
        lines.append(f"| {t['what']} | {t['target']} | {t['measured']} | {met} | {t['note']} |")
    return "\n".join(lines)


def render_correctness(summary: dict[str, Any], order: list[str]) -> str:
    lines = [
        "| system | job | lost per rep | extra executions per rep | SQLITE_BUSY lines | "
        "retried busy errors | database check |",
        "|---|---|---|---|---|---|---|",
    ]
    for system in order:
        for key, s in summary.get(system, {}).items():
            c = s.get("correctness")
            if not c:
                continue
            db = ""
            if "db_all_completed_per_rep" in c:
                ok = all(c["db_all_completed_per_rep"]) and all(c["db_logs_complete_per_rep"])
                db = "all completed, all logged" if ok else "**FAILED**"
            lines.append(
                f"| {system} | {key} | {c['lost_per_rep']} | {c['extra_executions_per_rep']} | "
                f"{c['busy_lines_per_rep']} | {c['busy_errors_per_rep']} | {db} |"
            )
    return "\n".join(lines)


def render_detail(summary: dict[str, Any], order: list[str]) -> str:
    lines = [
        "| system | job | metric | median | min..max | spread | vs raw_sqlite3 | "
        "vs raw_psycopg | notes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for system in order:
        for key, s in summary.get(system, {}).items():
            if "na" in s:
                lines.append(f"| {system} | {key} | | n/a | | | | | {s['na']} |")
                continue
            if "skipped" in s:
                lines.append(f"| {system} | {key} | | skipped | | | | | {s['skipped']} |")
                continue
            note = ""
            if s.get("failures"):
                note += f"FAILURES: {s['failures']} "
            if s.get("noisy_reps"):
                note += f"noisy reps: {s['noisy_reps']} "
            if s.get("worker_note"):
                note += s["worker_note"]
            first = True
            for name, _ in metrics_of(key):
                m = s.get(name)
                if not m:
                    lines.append(f"| {system} | {key} | {name} | FAILED | | | | | {note} |")
                    continue
                r1, r2 = m.get("ratio_vs_raw_sqlite3"), m.get("ratio_vs_raw_psycopg")
                spread = "" if m["spread_pct"] is None else f"{m['spread_pct']:.0f}%"
                lines.append(
                    f"| {system} | {key} | {name} | {fmt(m['median'])} | "
                    f"{fmt(m['min'])}..{fmt(m['max'])} | {spread} | "
                    f"{'' if r1 is None else f'{r1:.3f}'} | {'' if r2 is None else f'{r2:.3f}'} | "
                    f"{note if first else ''} |"
                )
                first = False
    return "\n".join(lines)


def render_markdown(doc: dict[str, Any]) -> str:
    summary = doc["summary"]
    order = [s for s in SYSTEMS if s in summary]
    env = doc["environment"]
    load0, load1 = env.get("loadavg_start"), env.get("loadavg_end")
    pg_version = str(env.get("postgresql") or "PostgreSQL not used").split(" on ")[0]
    parts = [
        f"# Benchmark results {doc['run_id']} "
        f"({doc['reps']} rep(s), {doc['total_runtime_s']:.0f} s)",
        "",
        f"Machine: {env.get('cpus')} CPUs, {env.get('platform')}; Python {env.get('python')}, "
        f"SQLite {env.get('sqlite')}; {pg_version}.",
        f"Load average at start {_load(load0)}, at end {_load(load1)}. "
        f"Waited {doc['noise_gate']['waited_total_s']:.0f} s in total for other tenants to go "
        f"quiet; `*` marks a rep during which they used more than "
        f"{doc['noise_gate']['other_tenant_cpu_busy_pct']:g}% of the CPUs.",
        "",
    ]
    for note in doc.get("notes", []):
        parts.append(f"- {note}")
    if doc.get("notes"):
        parts.append("")
    parts += [
        "## Median ±spread (ratio to raw_sqlite3; PostgreSQL systems also to raw_psycopg)",
        "",
        render_compact(summary, order),
        "",
        "tasks/s: higher is better; ms: lower is better. Spread = (max - min) / median over "
        "the reps.",
        "",
        "## Targets (issue 7) vs measured ratios",
        "",
        render_targets(doc["targets"]),
        "",
        "## Targets (issue 11, worker CLI defaults) vs measured ratios",
        "",
        render_targets(doc.get("targets_issue11") or targets_issue11(summary)),
        "",
        "## Cost per task (W3)",
        "",
        render_cost(summary, order),
        "",
        "Worker CPU: user + system time of the worker processes from the first task to the "
        "last, per task (startup left out). PostgreSQL: `pg_stat_database` deltas of the run's "
        "own database over the whole job (workers' startup and shutdown included), per task; "
        "WAL figures are `pg_stat_wal`, the whole server's, so other tenants' writes inflate "
        "them.",
        "",
        "## Correctness: every task exactly once",
        "",
        render_correctness(summary, order),
        "",
        "## Detail",
        "",
        render_detail(summary, order),
        "",
    ]
    return "\n".join(parts)


def _load(avg: Any) -> str:
    return "n/a" if not avg else " / ".join(f"{x:.2f}" for x in avg)


# --- docs ---

DOCS_START = "<!-- results:start -->"
DOCS_END = "<!-- results:end -->"


def update_docs(doc: dict[str, Any], docs_path: Path, results_rel: str) -> None:
    """Replace the results section of docs/benchmarks.md (between its markers)."""
    text = docs_path.read_text()
    if DOCS_START not in text or DOCS_END not in text:
        raise SystemExit(f"{docs_path} has no {DOCS_START} ... {DOCS_END} section")
    md = render_markdown(doc)
    # the page has its own title; demote the results' headings by one level
    md = re.sub(r"^(#+) ", lambda m: "#" + m.group(1) + " ", md, flags=re.M)
    stamp = f"<!-- generated by python -m benchmarks from {results_rel}; do not edit -->"
    block = f"{DOCS_START}\n{stamp}\n\n{md}\n{DOCS_END}"
    head, rest = text.split(DOCS_START, 1)
    _, tail = rest.split(DOCS_END, 1)
    docs_path.write_text(head + block + tail)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.report")
    ap.add_argument("results", nargs="?", type=Path, default=Path("benchmarks/results/latest.json"))
    ap.add_argument("--docs", type=Path, default=None, help="update this page's results section")
    a = ap.parse_args(argv)
    doc = json.loads(a.results.read_text())
    a.results.with_suffix(".md").write_text(render_markdown(doc))
    if a.docs:
        update_docs(doc, a.docs, a.results.as_posix())


if __name__ == "__main__":
    main()
