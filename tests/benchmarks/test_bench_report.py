"""The benchmark's arithmetic and reporting, on hand-made results (no processes, no timing)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks import report
from benchmarks.records import count_unique, percentile, quantiles, read_records, task_body
from benchmarks.runner import Options, select_systems


def w1(rate: float) -> dict[str, Any]:
    return {"ok": True, "tasks_per_s": rate, "p50_ms": 1000 / rate, "p99_ms": 3000 / rate}


def w3(rate: float, lost: int = 0, extra: int = 0, busy: int = 0) -> dict[str, Any]:
    return {
        "ok": True,
        "tasks_per_s": rate,
        "lost": lost,
        "extra_executions": extra,
        "busy_lines": busy,
        "status": "complete",
        "worker_stats": {},
        "log_error_lines": {},
    }


def sample_raw(prismq_w3: float = 9000.0, extra: int = 0) -> dict[str, Any]:
    return {
        "prismq_sqlite": {
            "W1_enqueue": [w1(10_000), w1(12_000), w1(11_000)],
            "W3_drain_4proc": [w3(prismq_w3, extra=extra)] * 3,
            "W4_latency": [
                {
                    "ok": True,
                    "p50_ms": 1.5,
                    "p99_ms": 4.0,
                    "lost": 0,
                    "extra_executions": 0,
                    "busy_lines": 0,
                }
            ]
            * 3,
        },
        "raw_sqlite3": {
            "W1_enqueue": [w1(20_000), w1(24_000), w1(22_000)],
            "W3_drain_4proc": [w3(16_000)] * 3,
        },
        "litequeue": {"W3_drain_4proc": [w3(1_300)] * 3},
    }


def test_medians_spreads_and_ratios_come_from_the_same_run() -> None:
    summary = report.aggregate(sample_raw())
    ours = summary["prismq_sqlite"]["W1_enqueue"]["tasks_per_s"]
    assert ours["median"] == 11_000
    assert ours["spread_pct"] == pytest.approx((12_000 - 10_000) / 11_000 * 100)
    assert ours["ratio_vs_raw_sqlite3"] == pytest.approx(11_000 / 22_000)
    # lower is better for latencies; the ratio is still ours / raw
    p50 = summary["prismq_sqlite"]["W1_enqueue"]["p50_ms"]
    assert p50["higher_is_better"] is False
    assert p50["ratio_vs_raw_sqlite3"] == pytest.approx(p50["median"] / (1000 / 22_000))


def test_targets_use_same_run_peers_and_flag_misses() -> None:
    raw = sample_raw(prismq_w3=5_000)
    targets = {(t["id"], t["what"]): t for t in report.targets(report.aggregate(raw), raw)}
    by_id = {key[0]: t for key, t in targets.items()}
    assert by_id["W1"]["met"] is True  # 0.5x exactly
    assert by_id["W3-raw"]["met"] is False  # 5,000 / 16,000
    assert by_id["W3-peers"]["met"] is True  # 5,000 >= 3 x 1,300
    assert "this run" in by_id["W3-peers"]["note"]
    assert "persist_queue_ack" in by_id["W3-peers"]["note"]  # not run here: said so
    assert by_id["W4"]["met"] is True
    assert by_id["ONCE"]["met"] is True
    assert by_id["W2"]["met"] is None  # not measured


def test_peer_target_falls_back_to_the_reference_run_through_ratios() -> None:
    raw = sample_raw()
    del raw["litequeue"]
    [t] = [t for t in report.targets(report.aggregate(raw), raw) if t["id"] == "W3-peers"]
    ref_ratio = report.REFERENCE["persist_queue_ack"]["W3_drain_4proc"] / 15_981
    assert t["met"] is (3 * ref_ratio <= 9_000 / 16_000)
    assert report.REFERENCE_RUN in t["note"]


def test_duplicates_fail_the_exactly_once_target() -> None:
    raw = sample_raw(extra=2)
    [t] = [t for t in report.targets(report.aggregate(raw), raw) if t["id"] == "ONCE"]
    assert t["met"] is False
    assert "duplicates 6" in t["measured"]


def test_markdown_and_docs_section(tmp_path: Path) -> None:
    raw = sample_raw()
    summary = report.aggregate(raw)
    doc = {
        "run_id": "test",
        "reps": 3,
        "total_runtime_s": 1.0,
        "environment": {"cpus": 2, "loadavg_start": [1.0, 1.0, 1.0], "loadavg_end": None},
        "noise_gate": {"waited_total_s": 0.0, "other_tenant_cpu_busy_pct": 25.0},
        "notes": ["huey_sqlite not run: huey not installed"],
        "summary": summary,
        "raw": raw,
        "targets": report.targets(summary, raw),
    }
    md = report.render_markdown(doc)
    assert "| **prismq_sqlite** | 11,000 ±18% (0.50x)" in md
    assert "huey_sqlite not run" in md
    page = tmp_path / "benchmarks.md"
    page.write_text(
        "# B\n<!-- results:start -->\nold\n<!-- results:end -->\n"
        "<!-- claims:start -->\nmine\n<!-- claims:end -->\n"
    )
    report.update_docs(doc, page, "benchmarks/results/latest.json")
    text = page.read_text()
    assert "old" not in text
    assert "\n### Targets (issue 7)" in text  # headings demoted by one level
    assert "<!-- claims:start -->\nmine\n<!-- claims:end -->" in text


def test_records_and_percentiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRISMQ_BENCH_REC_DIR", str(tmp_path))
    for i in (1, 2, 2, 3):
        task_body(i, 0.5)
    recs = read_records(tmp_path)
    assert [r[0] for r in recs] == [1, 2, 2, 3]
    assert all(r[1] == 0.5 and r[2] <= r[3] for r in recs)
    assert count_unique(tmp_path, 0, 3) == 2
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([5], 99) == 5
    q = quantiles([float(i) for i in range(101)])
    assert (q[0], q[50], q[-1]) == (0, 50, 100)


def test_missing_peer_libraries_are_reported_not_run() -> None:
    systems, notes = select_systems(
        Options(systems=["raw_sqlite3", "prismq_pg"], backends=["sqlite", "postgresql"]),
        pg_available=False,
    )
    assert systems == ["raw_sqlite3"]
    assert notes == []


def test_documented_schema_floor_command_runs() -> None:
    """The schema-floor example of docs/benchmarks.md, at a tiny size."""
    root = Path(__file__).resolve().parents[2]
    text = (root / "docs" / "benchmarks.md").read_text()
    block = re.search(
        r"<!-- schema-floor-example -->\s*```bash\n(.+?)\n```\s*<!-- /schema-floor-example -->",
        text,
        re.S,
    )
    assert block
    argv = shlex.split(block.group(1))
    assert argv[:3] == ["python", "-m", "benchmarks.schema_floor"]
    proc = subprocess.run(
        [sys.executable, *argv[1:3], "--rows", "300", "--reps", "1"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
    names = [line.split("|")[1].strip() for line in rows[1:]]
    assert names == ["raw", "wide", "wide+checks", "wide+indexes", "prismq", "prismq+log"]
