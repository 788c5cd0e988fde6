"""Plots from a results JSON: throughput per workload and latency distributions.

``python -m benchmarks.plot [RESULTS.json] [--out docs/img]`` writes ``bench_*.png``.
matplotlib comes with the ``dev`` extra.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from benchmarks.records import QUANTILES
from benchmarks.systems import PRISMQ, SYSTEMS

THROUGHPUT_KEYS = (
    ("W1_enqueue", "W1 single enqueue"),
    ("W2_batch_enqueue", "W2 batch enqueue (1,000 per batch)"),
    ("W3_drain_1proc", "W3 drain, 1 worker process"),
    ("W3_drain_4proc", "W3 drain, 4 worker processes"),
)
PRISMQ_COLOR = "#d62728"
BASELINE_COLOR = "#7f7f7f"
PEER_COLOR = "#1f77b4"


def _color(system: str) -> str:
    if system.split(" ")[0] in PRISMQ:
        return PRISMQ_COLOR
    if system.startswith("raw_"):
        return BASELINE_COLOR
    return PEER_COLOR


def _ordered(summary: dict[str, Any]) -> list[str]:
    return [s for s in SYSTEMS if s in summary]


def _rows_for(summary: dict[str, Any], key: str, metric: str) -> list[tuple[str, dict[str, Any]]]:
    """(label, metric summary) for every system and variant that measured ``key``."""
    rows = []
    for system in _ordered(summary):
        for k, s in summary[system].items():
            if k.split("[", 1)[0] != key or metric not in s:
                continue
            label = system if "[" not in k else f"{system} [{k.split('[', 1)[1].rstrip(']')}]"
            rows.append((label, s[metric]))
    return rows


def plot_throughput(doc: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = doc["summary"]
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    for ax, (key, title) in zip(axes.flat, THROUGHPUT_KEYS, strict=True):
        rows = _rows_for(summary, key, "tasks_per_s")
        if not rows:
            ax.set_title(f"{title}: not measured")
            ax.axis("off")
            continue
        labels = [label for label, _ in rows][::-1]
        med = [m["median"] for _, m in rows][::-1]
        lo = [m["median"] - m["min"] for _, m in rows][::-1]
        hi = [m["max"] - m["median"] for _, m in rows][::-1]
        ax.barh(labels, med, xerr=[lo, hi], color=[_color(label) for label in labels], capsize=3)
        for y, value in enumerate(med):
            ax.text(value * 1.05, y, f"{value:,.0f}", va="center", fontsize=8)
        ax.set_xscale("log")
        ax.set_title(title)
        ax.set_xlabel("tasks/s (log scale; bar = median, whiskers = min..max of the reps)")
        ax.tick_params(axis="y", labelsize=8)
        if med:
            ax.set_xlim(min(med) / 2, max(med) * 4)
    fig.suptitle(
        f"Throughput, run {doc['run_id']} ({doc['reps']} reps); red = prismq-queue, "
        "grey = raw loops, blue = peers"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _median_rep_quantiles(doc: dict[str, Any], system: str, key: str) -> list[float] | None:
    """The latency quantiles of the rep whose p50 is the median one."""
    runs = [r for r in doc["raw"].get(system, {}).get(key, []) if r.get("latency_quantiles_ms")]
    if not runs:
        return None
    runs.sort(key=lambda r: r["p50_ms"])
    q: list[float] = runs[len(runs) // 2]["latency_quantiles_ms"]
    return q


def plot_latency(doc: dict[str, Any], key: str, title: str, path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = []
    for system in _ordered(doc["summary"]):
        for k in doc["raw"].get(system, {}):
            if k.split("[", 1)[0] != key:
                continue
            q = _median_rep_quantiles(doc, system, k)
            if q:
                label = system if "[" not in k else f"{system} [{k.split('[', 1)[1].rstrip(']')}]"
                curves.append((label, q))
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(11, 6))
    styles = ["-", "--", "-.", ":"]
    for i, (label, q) in enumerate(curves):
        ax.plot(
            [max(v, 1e-3) for v in q],
            QUANTILES[: len(q)],
            styles[i % len(styles)],
            color=_color(label),
            label=label,
            linewidth=2.2 if label.split(" ")[0] in PRISMQ else 1.2,
        )
    ax.set_xscale("log")
    ax.set_xlabel("latency, ms (log scale)")
    ax.set_ylabel("percentile")
    ax.set_yticks([0, 10, 25, 50, 75, 90, 100])
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(f"{title}, run {doc['run_id']} (the rep with the median p50)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_all(doc: dict[str, Any], out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [plot_throughput(doc, out_dir / "bench_throughput.png")]
    for key, title, name in (
        ("W1_enqueue", "W1: latency of one enqueue call (CDF)", "bench_latency_w1.png"),
        (
            "W4_latency",
            "W4: enqueue-to-start latency at one task per 10 ms (CDF)",
            "bench_latency_w4.png",
        ),
    ):
        path = plot_latency(doc, key, title, out_dir / name)
        if path:
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.plot")
    ap.add_argument("results", nargs="?", type=Path, default=Path("benchmarks/results/latest.json"))
    ap.add_argument("--out", type=Path, default=Path("docs/img"))
    a = ap.parse_args(argv)
    for path in plot_all(json.loads(a.results.read_text()), a.out):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
