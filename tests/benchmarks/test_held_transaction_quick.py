"""Smoke test of ``python -m benchmarks.held_transaction`` (issue 11 F) at tiny durations.

Nothing here asserts a speed (the machine is shared). It asserts what the reproduction must
keep doing so that it cannot rot: a transaction really is held (it has a txid), every window
has its figures, the probe explains the claim statement of the code under test, every task
ran once, the throwaway schema is gone, and the markdown table is written.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PG_ENV = "PRISMQ_QUEUE_TEST_POSTGRES_URL"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.environ.get(PG_ENV), reason=f"needs {PG_ENV}"),
]


def documented_command() -> list[str]:
    text = (ROOT / "docs" / "benchmarks.md").read_text()
    block = re.search(
        r"<!-- held-transaction-example -->\s*```bash\n(.+?)\n```"
        r"\s*<!-- /held-transaction-example -->",
        text,
        re.S,
    )
    assert block, "docs/benchmarks.md lost its held-transaction example"
    argv = shlex.split(block.group(1), comments=True)
    assert argv[:3] == ["python", "-m", "benchmarks.held_transaction"]
    return [sys.executable, *argv[1:]]


def test_documented_held_transaction_repro_runs_and_reports(tmp_path: Path) -> None:
    out = tmp_path / "held.json"
    argv = [
        *documented_command(),
        "--rate",
        "40",
        "--workers",
        "2",
        "--producers",
        "2",
        "--steady",
        "1",
        "--hold",
        "2",
        "--after",
        "1",
        "--window",
        "1",
        "--drain-timeout",
        "30",
        "--out",
        str(out),
        "--logdir",
        str(tmp_path / "logs"),
    ]
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(out.read_text())

    assert doc["holder_error"] is None
    assert isinstance(doc["held_txid"], int)
    assert doc["produced"] == 160
    assert doc["unfinished"] == 0
    assert doc["completed"] == doc["produced"]
    assert doc["extra_attempts"] == 0
    assert doc["log_counts"].get("completed") == doc["produced"]
    phases = [w["phase"] for w in doc["windows"]]
    assert len(phases) == 4
    assert "held" in phases
    assert phases[0] == "before"
    offered = sum(w["offered_per_s"] for w in doc["windows"])  # x 1 s windows
    assert 0 < offered <= 160  # a producer late on a loaded machine spills past the end
    assert doc["held_phase"]["claim_p99_ms"] is not None
    assert set(doc["held_phase"]["target"]) >= {"throughput_met", "claim_p99_met"}
    assert doc["worker_metrics"] is True
    assert doc["probe_errors"] == []
    plan = doc["plan_before"]
    assert plan is not None
    assert plan["Plan"]["Node Type"] == "ModifyTable"
    assert any("execution_ms" in w.get("probe", {}) for w in doc["windows"])
    assert any("bare_execution_ms" in w.get("probe", {}) for w in doc["windows"])

    md = out.with_suffix(".md").read_text()
    assert "| **held** |" in md
    assert "Target during the held transaction" in md

    from sqlalchemy import create_engine, text

    from queue_core.database import Database

    engine = create_engine(Database(os.environ[PG_ENV]).url)
    try:
        with engine.connect() as conn:
            left = conn.execute(
                text("SELECT count(*) FROM pg_database WHERE datname = :s"),
                {"s": doc["schema"]},
            ).scalar_one()
    finally:
        engine.dispose()
    assert left == 0, "the throwaway database was not dropped"
