"""Smoke test of the SQLite tuning study: the --quick command documented in
docs/research/sqlite-tuning.md runs, and the guarantees it measures hold.

Nothing here asserts a speed: the machine is shared. It asserts what must be true at any speed:
every task ran exactly once, no acknowledged commit vanished after a kill, our PRAGMAs were in
effect, and neither BEGIN IMMEDIATE nor our busy_timeout let SQLITE_BUSY reach the caller.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from queue_core.settings import (
    SQLITE_BUSY_TIMEOUT_MS,
    SQLITE_CACHE_SIZE_KIB,
    SQLITE_WAL_AUTOCHECKPOINT_PAGES,
)

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "research" / "sqlite-tuning.md"
EXPERIMENTS = {
    "synchronous",
    "crash",
    "wal_autocheckpoint",
    "cache_mmap",
    "busy_timeout",
    "begin_mode",
    "processes",
}
MMAP_256_MIB = 256 * 1024 * 1024


def documented_quick_command() -> list[str]:
    for block in re.findall(r"```[a-z]*\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S):
        for line in block.splitlines():
            if "benchmarks.sqlite_tuning" in line and "--quick" in line:
                return shlex.split(line.strip().removeprefix("$ "))
    pytest.fail(f"{DOC} has no fenced `python -m benchmarks.sqlite_tuning --quick` example")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("sqlite_tuning")
    argv = documented_quick_command()
    assert argv[:3] == ["python", "-m", "benchmarks.sqlite_tuning"]
    command = [sys.executable, *argv[1:], "--out", str(out), "--img", str(out / "img")]
    command += ["--workdir", str(out / "db")]
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads((out / "sqlite_tuning.json").read_text(encoding="utf-8")), out


def rows(result: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return list(result["experiments"][name]["rows"])


def median(row: dict[str, Any], metric: str) -> float:
    return float(row["metrics"][metric]["median"])


def test_every_experiment_ran_with_our_pragmas(quick_run: tuple[dict[str, Any], Path]) -> None:
    result, _ = quick_run
    assert set(result["experiments"]) == EXPERIMENTS
    defaults = result["run"]["engine_defaults"]
    assert defaults["journal_mode"] == "wal"
    assert defaults["synchronous"] == 1  # NORMAL
    assert defaults["busy_timeout"] == SQLITE_BUSY_TIMEOUT_MS
    assert defaults["cache_size"] == -SQLITE_CACHE_SIZE_KIB
    assert defaults["wal_autocheckpoint"] == SQLITE_WAL_AUTOCHECKPOINT_PAGES
    assert defaults["mmap_size"] == 0


def test_overrides_reach_the_connections(quick_run: tuple[dict[str, Any], Path]) -> None:
    result, _ = quick_run
    synchronous = {
        row["setting"]: row["params"]["effective"] for row in rows(result, "synchronous")
    }
    assert synchronous["NORMAL"]["synchronous"] == 1
    assert synchronous["FULL"]["synchronous"] == 2
    checkpoints = {
        row["params"]["wal_autocheckpoint"]: row["params"]["effective"]["wal_autocheckpoint"]
        for row in rows(result, "wal_autocheckpoint")
    }
    assert checkpoints
    assert all(asked == seen for asked, seen in checkpoints.items())
    mmap = [row for row in rows(result, "cache_mmap") if "mmap_size" in row["params"]["pragmas"]]
    assert mmap
    assert mmap[0]["params"]["effective"]["mmap_size"] == MMAP_256_MIB


def test_a_killed_process_loses_no_acknowledged_commit(
    quick_run: tuple[dict[str, Any], Path],
) -> None:
    result, _ = quick_run
    (row,) = rows(result, "crash")
    assert median(row, "kills") >= 1
    assert median(row, "acknowledged") > 0
    assert median(row, "lost_acknowledged") == 0
    assert median(row, "integrity_failures") == 0
    assert median(row, "log_mismatch") == 0


def test_every_drain_ran_each_task_exactly_once(quick_run: tuple[dict[str, Any], Path]) -> None:
    result, _ = quick_run
    for name in ("cache_mmap", "busy_timeout", "begin_mode", "processes"):
        for row in rows(result, name):
            for check in row["checks"]:
                assert check["tasks"] == check["expected"] > 0, (name, row["setting"])
                assert check["duplicates"] == 0, (name, row["setting"])
                assert check["lease_lost"] == 0, (name, row["setting"])


def test_no_sqlite_busy_surfaces_with_immediate_and_our_timeout(
    quick_run: tuple[dict[str, Any], Path],
) -> None:
    result, _ = quick_run
    immediate = [row for row in rows(result, "begin_mode") if row["params"]["mode"] == "immediate"]
    ours = [
        row
        for row in rows(result, "busy_timeout")
        if row["params"]["busy_timeout_ms"] == SQLITE_BUSY_TIMEOUT_MS
    ]
    for row in [*immediate, *ours, *rows(result, "processes")]:
        assert median(row, "busy_errors") == 0, row["setting"]


def test_markdown_and_plots_are_written(quick_run: tuple[dict[str, Any], Path]) -> None:
    result, out = quick_run
    table = (out / "sqlite_tuning.md").read_text(encoding="utf-8")
    for experiment in result["experiments"].values():
        assert f"## {experiment['title']}" in table
    plots = sorted((out / "img").glob("tuning_*.png"))
    assert len(plots) == 6
    for plot in plots:
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
