"""Fairness and starvation per strategy, measured through the real claim path.

``python -m benchmarks.fairness [--quick] [--update-docs]``

SQLite, a ManualClock (one tick = one second) and seeded RNGs, so the figures are
reproducible; the strategies behave the same on PostgreSQL (same ORDER BY, same race keys).

1. Share: four priorities (1, 10, 100, 1000) with five tasks each, kept constant (each claimed
   task is completed and replaced by a new task of its priority). The share of claims each
   priority gets, beside weighted_random's exact share (count_p / p) / sum.
2. Waiting under load: each tick, a Poisson number of tasks arrive (0.9 per tick on average:
   90% load; 1.1: overload), each with a priority drawn uniformly from the four, and one task
   is claimed and completed.
   Per priority: mean and p95 wait (ticks from enqueue to claim), and how many of its tasks
   were still waiting at the end, with the oldest one's age.

Writes ``benchmarks/results/fairness.json`` and ``fairness.md``; with ``--update-docs`` the
section of docs/strategies.md between its ``fairness`` markers.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from queue_core import migrate
from queue_core.clock import ManualClock
from queue_core.database import Database
from queue_core.repositories import LeaseRepository, TaskRepository
from queue_core.schemas import TaskCreate
from queue_core.settings import sqlite_url_for

ROOT = Path(__file__).resolve().parent.parent
STRATEGIES = ["fifo", "lifo", "priority", "weighted_random"]
PRIORITIES = [1, 10, 100, 1000]
PER_PRIORITY = 5
SEED = 7
MARK_START, MARK_END = "<!-- fairness:start -->", "<!-- fairness:end -->"
FULL = {"share_claims": 4000, "ticks": 3000, "loads": [0.9, 1.1]}
QUICK = {"share_claims": 100, "ticks": 100, "loads": [0.9, 1.1]}


def _fresh(
    workdir: Path, name: str
) -> tuple[Database, ManualClock, TaskRepository, LeaseRepository]:
    db = Database(sqlite_url_for(workdir / f"{name}.db"))
    migrate.upgrade(db)
    clock = ManualClock()
    return (
        db,
        clock,
        TaskRepository(db, clock, rng=random.Random(SEED)),
        LeaseRepository(db, clock, rng=random.Random(SEED + 1)),
    )


def shares(workdir: Path, strategy: str, claims: int) -> dict[str, float]:
    db, clock, tasks, leases = _fresh(workdir, f"share-{strategy}")
    for _ in range(PER_PRIORITY):
        for p in PRIORITIES:
            tasks.enqueue(type="t", priority=p)
            clock.advance(0.001)
    counts = dict.fromkeys(PRIORITIES, 0)
    for _ in range(claims):
        [task] = leases.claim("w", ["t"], strategy=strategy)
        counts[task.priority] += 1
        leases.complete(task.lease)
        clock.advance(1)
        tasks.enqueue(type="t", priority=task.priority)
    db.dispose()
    return {str(p): counts[p] / claims for p in PRIORITIES}


def _poisson(rng: random.Random, mean: float) -> int:
    """Arrivals in one tick (Knuth): bursts happen, so a queue forms below 100% load too."""
    limit, n, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        n += 1
        product *= rng.random()
    return n


def waiting(workdir: Path, strategy: str, load: float, ticks: int) -> dict[str, Any]:
    db, clock, tasks, leases = _fresh(workdir, f"wait-{strategy}-{load}")
    rng = random.Random(SEED + 2)
    enqueued_at: dict[int, int] = {}
    priority_of: dict[int, int] = {}
    waits: dict[int, list[int]] = {p: [] for p in PRIORITIES}
    arrived = dict.fromkeys(PRIORITIES, 0)
    for tick in range(ticks):
        arrivals = _poisson(rng, load)
        specs = [TaskCreate(type="t", priority=rng.choice(PRIORITIES)) for _ in range(arrivals)]
        for task in tasks.enqueue_many(specs) if specs else []:
            enqueued_at[task.task_id] = tick
            priority_of[task.task_id] = task.priority
            arrived[task.priority] += 1
        for task in leases.claim("w", ["t"], strategy=strategy):
            waits[task.priority].append(tick - enqueued_at.pop(task.task_id))
            leases.complete(task.lease)
        clock.advance(1)
    db.dispose()
    out: dict[str, Any] = {}
    for p in PRIORITIES:
        left = [ticks - t for i, t in enqueued_at.items() if priority_of[i] == p]
        w = sorted(waits[p])
        out[str(p)] = {
            "arrived": arrived[p],
            "served": len(w),
            "mean_wait": sum(w) / len(w) if w else None,
            "p95_wait": w[min(len(w) - 1, math.ceil(0.95 * len(w)) - 1)] if w else None,
            "still_waiting": len(left),
            "oldest_waiting_age": max(left) if left else 0,
        }
    return out


def measure(config: dict[str, Any]) -> dict[str, Any]:
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="prismq-fairness-") as tmp:
        workdir = Path(tmp)
        doc: dict[str, Any] = {"config": config, "shares": {}, "waiting": {}}
        weights = {p: PER_PRIORITY / p for p in PRIORITIES}
        total = sum(weights.values())
        doc["expected_weighted_share"] = {str(p): w / total for p, w in weights.items()}
        for strategy in STRATEGIES:
            doc["shares"][strategy] = shares(workdir, strategy, config["share_claims"])
            for load in config["loads"]:
                key = f"{strategy}@{load}"
                doc["waiting"][key] = waiting(workdir, strategy, load, config["ticks"])
    doc["elapsed_seconds"] = round(time.time() - started, 1)
    return doc


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def markdown(doc: dict[str, Any], quick: bool) -> str:
    config = doc["config"]
    lines = [
        f"Measured by `python -m benchmarks.fairness{' --quick' if quick else ''}` (SQLite, "
        f"seeded, {doc['elapsed_seconds']:.0f} s). Raw data: `benchmarks/results/fairness.json`.",
        "",
        f"**Share of claims** ({config['share_claims']:,} claims; {PER_PRIORITY} tasks of each "
        "priority always queued, each claimed task replaced by one of its priority):",
        "",
        "| strategy | " + " | ".join(f"priority {p}" for p in PRIORITIES) + " |",
        "|---|" + "---|" * len(PRIORITIES),
    ]
    for strategy in STRATEGIES:
        row = doc["shares"][strategy]
        lines.append(f"| {strategy} | " + " | ".join(_pct(row[str(p)]) for p in PRIORITIES) + " |")
    lines.append(
        "| *exact 1/priority share* | "
        + " | ".join(_pct(doc["expected_weighted_share"][str(p)]) for p in PRIORITIES)
        + " |"
    )
    for load in config["loads"]:
        lines += [
            "",
            f"**Waiting under {int(load * 100)}% load** ({config['ticks']:,} ticks; Poisson "
            f"arrivals, {load} per tick, uniform priority; one claim per tick). Mean / p95 wait in "
            "ticks; still waiting at the end (oldest age):",
            "",
            "| strategy | " + " | ".join(f"priority {p}" for p in PRIORITIES) + " |",
            "|---|" + "---|" * len(PRIORITIES),
        ]
        for strategy in STRATEGIES:
            row = doc["waiting"][f"{strategy}@{load}"]
            cells = []
            for p in PRIORITIES:
                entry = row[str(p)]
                if entry["served"]:
                    cell = f"{entry['mean_wait']:.1f} / {entry['p95_wait']}"
                else:
                    cell = "never served"
                if entry["still_waiting"]:
                    cell += f"; {entry['still_waiting']} left ({entry['oldest_waiting_age']})"
                cells.append(cell)
            lines.append(f"| {strategy} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def update_docs(section: str, path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    start, end = text.index(MARK_START), text.index(MARK_END)
    path.write_text(text[: start + len(MARK_START)] + "\n" + section + text[end:], encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fairness", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--update-docs", action="store_true")
    parser.add_argument("--silent", action="store_true")
    args = parser.parse_args(argv)
    doc = measure(QUICK if args.quick else FULL)
    section = markdown(doc, args.quick)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "fairness.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    (args.out / "fairness.md").write_text("## Fairness\n\n" + section, encoding="utf-8")
    if args.update_docs:
        update_docs(section, ROOT / "docs" / "strategies.md")
    if not args.silent:
        print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
