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
    assert "old" not in text
    assert text.endswith(f"{claims.MARK_END}\n\nafter\n")
    assert "### Aims (SQLite)" in text
