"""Smoke test of ``python -m benchmarks``: the --quick command documented in
docs/benchmarks.md runs end to end on SQLite (and a small PostgreSQL run when a server is
configured), and the guarantees it checks hold.

Nothing here asserts a speed (the machine is shared). It asserts what must be true at any
speed: every workload produced a figure, every task ran exactly once, the database says every
task completed with all its log rows, no SQLITE_BUSY showed up, and the report holds the
targets table with ratios taken from the same run.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "benchmarks.md"
PG_ENV = "PRISMQ_QUEUE_TEST_POSTGRES_URL"


def documented_quick_command() -> list[str]:
    text = DOC.read_text()
    block = re.search(
        r"<!-- bench-quick-example -->\s*```bash\n(.+?)\n```\s*<!-- /bench-quick-example -->",
        text,
        re.S,
    )
    assert block, "docs/benchmarks.md lost its quick example"
    argv = shlex.split(block.group(1).strip())
    assert argv[:3] == ["python", "-m", "benchmarks"]
    return [sys.executable, *argv[1:]]


def run_bench(argv: list[str], out: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    proc = subprocess.run(
        [*argv, "--out", str(out), "--no-plots", "--no-docs"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc: dict[str, Any] = json.loads(out.read_text())
    doc["_stderr"] = proc.stderr
    doc["_stdout"] = proc.stdout
    return doc


def assert_ran_exactly_once(doc: dict[str, Any], system: str) -> None:
    for key, runs in doc["raw"][system].items():
        for run in runs:
            assert run["ok"], (system, key, run.get("error"), run.get("traceback"))
            if key.startswith(("W3", "W4")):
                assert run["lost"] == 0, (system, key)
                assert run["extra_executions"] == 0, (system, key)
                assert run["busy_lines"] == 0, (system, key, run["log_error_samples"])
            if key.startswith("W3") and system.startswith("prismq"):
                assert run["db_all_completed"], run["db_status_counts"]
                assert run["db_logs_complete"], run["db_log_counts"]


def test_documented_quick_run_on_sqlite(tmp_path: Path) -> None:
    doc = run_bench(documented_quick_command(), tmp_path / "quick.json")

    assert doc["quick"] is True
    assert doc["reps"] == 1
    assert doc["systems"] == ["prismq_sqlite", "raw_sqlite3"]
    for system in doc["systems"]:
        keys = set(doc["summary"][system])
        assert keys == {
            "W1_enqueue",
            "W2_batch_enqueue",
            "W3_drain_1proc",
            "W3_drain_4proc",
            "W4_latency",
        }
        assert doc["summary"][system]["W1_enqueue"]["tasks_per_s"]["median"] > 0
        assert doc["summary"][system]["W4_latency"]["p50_ms"]["median"] > 0
        assert_ran_exactly_once(doc, system)

    ours = doc["summary"]["prismq_sqlite"]["W1_enqueue"]["tasks_per_s"]
    raw = doc["summary"]["raw_sqlite3"]["W1_enqueue"]["tasks_per_s"]
    assert ours["ratio_vs_raw_sqlite3"] == pytest.approx(ours["median"] / raw["median"])
    assert len(doc["raw"]["prismq_sqlite"]["W1_enqueue"][0]["latency_quantiles_ms"]) > 100

    targets = {t["id"]: t for t in doc["targets"]}
    assert {"W1", "W2", "W3-raw", "W3-peers", "W4", "BUSY", "ONCE"} <= set(targets)
    assert targets["ONCE"]["met"] is True
    assert targets["BUSY"]["met"] is True
    # the peers were not asked for: the SQLite peer target falls back to the reference run
    assert "reference" in targets["W3-peers"]["note"] or "peers' run" in targets["W3-peers"]["note"]

    md = (tmp_path / "quick.md").read_text()
    assert "## Targets (issue 7) vs measured ratios" in md
    assert "| **prismq_sqlite** |" in md
    assert "(1/" in doc["_stderr"], "no progress output"


@pytest.mark.skipif(not os.environ.get(PG_ENV), reason=f"needs {PG_ENV}")
def test_quick_run_on_postgresql(tmp_path: Path) -> None:
    argv = [
        sys.executable,
        "-m",
        "benchmarks",
        "--quick",
        "--backends",
        "postgresql",
        "--systems",
        "prismq_pg,raw_psycopg",
        "--workloads",
        "W1,W3",
        "--no-variants",
    ]
    doc = run_bench(argv, tmp_path / "pg.json")
    if not doc["systems"]:
        pytest.skip(f"PostgreSQL unreachable: {doc['notes']}")
    assert doc["systems"] == ["prismq_pg", "raw_psycopg"]
    for system in doc["systems"]:
        assert_ran_exactly_once(doc, system)
    w1 = doc["summary"]["prismq_pg"]["W1_enqueue"]["tasks_per_s"]
    assert "ratio_vs_raw_psycopg" in w1
    assert {t["id"] for t in doc["targets"]} >= {"PG-W1", "PG-W3"}


def test_unreachable_postgresql_is_skipped_with_a_note(tmp_path: Path) -> None:
    argv = [
        sys.executable,
        "-m",
        "benchmarks",
        "--quick",
        "--systems",
        "raw_sqlite3,raw_psycopg",
        "--workloads",
        "W1",
        "--pg-url",
        "postgresql+psycopg://nobody@127.0.0.1:1/none",
    ]
    doc = run_bench(argv, tmp_path / "nopg.json")
    assert doc["systems"] == ["raw_sqlite3"]
    assert any("PostgreSQL skipped" in note for note in doc["notes"])
    assert "PostgreSQL skipped" in (tmp_path / "nopg.md").read_text()
