"""benchmarks/claims.py --quick runs end to end (SQLite), so the script cannot rot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import claims


@pytest.mark.timeout(180)
def test_claims_benchmark_quick(tmp_path: Path) -> None:
    docs = tmp_path / "benchmarks.md"
    docs.write_text(f"# x\n\n{claims.MARK_START}\nold\n{claims.MARK_END}\n\nafter\n")
    assert (
        claims.main(
            [
                "--quick",
                "--backends",
                "sqlite",
                "--out",
                str(tmp_path / "results"),
                "--img-dir",
                str(tmp_path / "img"),
                "--silent",
            ]
        )
        == 0
    )
    doc = json.loads((tmp_path / "results" / "claims.json").read_text())
    for strategy in claims.STRATEGIES:
        assert doc["throughput"][f"sqlite/{strategy}/1"]["median"] > 0
        assert doc["latency"][f"sqlite/{strategy}/500"]["p99_ms"]["median"] > 0
    assert doc["throughput"]["raw_sqlite3/1"]["median"] > 0
    assert (tmp_path / "img" / "claims_latency_vs_depth.png").stat().st_size > 1000
    assert (tmp_path / "img" / "claims_throughput_vs_processes.png").stat().st_size > 1000
    section = (tmp_path / "results" / "claims.md").read_text()
    assert "| claim p99 < 5 ms" in section
    claims.update_docs(section, docs)
    text = docs.read_text()
    assert "\nold\n" not in text  # the placeholder line is replaced
    assert text.endswith(f"{claims.MARK_END}\n\nafter\n")
    assert "### Aims (SQLite)" in text


@pytest.mark.timeout(180)
def test_fairness_benchmark_quick(tmp_path: Path) -> None:
    from benchmarks import fairness

    assert fairness.main(["--quick", "--out", str(tmp_path), "--silent"]) == 0
    doc = json.loads((tmp_path / "fairness.json").read_text())
    shares = doc["shares"]
    assert shares["priority"]["1"] == 1.0  # priority 1 is always queued: nothing else runs
    assert shares["fifo"] == {"1": 0.25, "10": 0.25, "100": 0.25, "1000": 0.25}
    assert max(shares["lifo"].values()) == 1.0  # the last replenished priority takes all
    assert shares["weighted_random"]["1"] > 0.8
    assert "**Waiting under 110% load**" in (tmp_path / "fairness.md").read_text()
