"""benchmarks/http.py: the report it writes and the docs section it owns."""

from __future__ import annotations

from pathlib import Path

from benchmarks.http import END_MARKER, START_MARKER, markdown, percentile, summarise, update_docs


def test_percentiles_and_summary() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.50) == 50
    assert percentile(values, 0.99) == 99
    result = summarise(
        "get", "fixed-rate", [v / 1000 for v in values], {"200": 100}, 0, 0.5, 200, None
    )
    assert result.achieved_rps == 200
    assert (result.p50_ms, result.p99_ms, result.max_ms) == (50, 99, 100)


def test_report_and_docs_section(tmp_path: Path) -> None:
    fast = summarise("get", "fixed-rate", [0.001] * 10, {"200": 10}, 0, 1.0, 200, None)
    slow = summarise("post", "saturation", [0.02] * 10, {"201": 10}, 0, 1.0, None, 16)
    table = markdown(
        [fast, slow],
        {"python": "3.11", "cpus": 2, "uvicorn_http": "h11", "uvicorn_loop": "asyncio"},
        "2026-01-01 00:00 UTC",
    )
    assert "| GET /api/queue/tasks/{id} | fixed 200 req/s, 1 s |" in table
    assert "saturation, 16 connections" in table
    assert "p99 < 5 ms: **met**" in table

    page = tmp_path / "benchmarks.md"
    page.write_text(f"# B\n\nbefore\n\n{START_MARKER}\nold\n{END_MARKER}\n\nafter\n")
    update_docs(page, table)
    text = page.read_text()
    assert "old" not in text
    assert text.startswith("# B\n\nbefore\n\n")
    assert text.endswith(f"{END_MARKER}\n\nafter\n")
    assert table in text
    update_docs(page, table)
    assert page.read_text() == text
