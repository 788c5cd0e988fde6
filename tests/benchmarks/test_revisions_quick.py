"""``python -m benchmarks.revisions --quick`` runs end to end on SQLite: each tree's job and
worker processes import that tree's packages, each tree's database carries its own schema
revision, and the temporary worktree is gone afterwards. Nothing here asserts a speed."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from benchmarks import revisions

PG_ENV = "PRISMQ_QUEUE_TEST_POSTGRES_URL"
BASE = "7fc61c0"  # the last commit before flow control (docs/benchmarks.md)


def _worktrees() -> str:
    return subprocess.run(
        ["git", "worktree", "list", "--porcelain"],
        cwd=revisions.ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


@pytest.mark.timeout(120)
def test_quick_run_compares_two_trees(tmp_path: Path) -> None:
    if not (revisions.ROOT / ".git").exists():
        pytest.skip("not a git checkout: the benchmark checks out a revision with git worktree")
    if revisions.commit_of(BASE) is None:
        pytest.skip(f"{BASE} is not in this clone (a shallow clone lacks the history)")
    before = _worktrees()
    out = tmp_path / "revisions.json"
    code = revisions.main(
        [
            "--base",
            BASE,
            "--quick",
            "--backends",
            "sqlite",
            "--workloads",
            "W1,W3",
            "--nprocs",
            "1",
            "--out",
            str(out),
            "--no-docs",
            "--silent",
        ]
    )
    doc = json.loads(out.read_text())
    assert code == 0, doc["raw"]
    assert _worktrees() == before  # the temporary worktree is removed

    base, head = doc["trees"]["base"], doc["trees"]["head"]
    assert base["commit"].startswith(BASE)
    assert base["imports_outside_tree"] == head["imports_outside_tree"] == []
    assert [Path(f) for f in head["queue_core_files"]] == [
        revisions.ROOT / "queue_core" / "__init__.py"
    ]
    assert len(base["queue_core_files"]) == 1
    assert revisions.ROOT not in Path(base["queue_core_files"][0]).parents
    # each tree migrated its own database: the base predates the flow-control revisions
    assert base["schema_revisions"]["sqlite"] != head["schema_revisions"]["sqlite"]

    for tree in revisions.TREES:
        w3 = doc["raw"][tree]["sqlite"]["W3_drain_1proc"][0]
        assert w3["ok"], w3.get("error")
        assert w3["lost"] == 0
        assert w3["extra_executions"] == 0
        assert w3["probe"]["worker_processes"] == 1
    rows = {(r["workload"], r["metric"]): r for r in doc["summary"]}
    assert rows[("W1_enqueue", "tasks_per_s")]["ratio"] > 0
    assert rows[("W3_drain_1proc", "tasks_per_s")]["ratio"] > 0
    assert "| sqlite | W1_enqueue | **tasks/s** |" in out.with_suffix(".md").read_text()


@pytest.mark.postgres
@pytest.mark.timeout(120)
def test_quick_run_on_postgresql(tmp_path: Path) -> None:
    """Each tree gets a PostgreSQL database of its own, migrated by its own harness."""
    if not os.environ.get(PG_ENV):
        pytest.skip(f"set {PG_ENV} to run the PostgreSQL benchmark")
    if not (revisions.ROOT / ".git").exists() or revisions.commit_of(BASE) is None:
        pytest.skip(f"{BASE} is not in this clone (a shallow clone lacks the history)")
    out = tmp_path / "revisions.json"
    argv = ["--base", BASE, "--quick", "--backends", "postgresql", "--workloads", "W1"]
    code = revisions.main([*argv, "--out", str(out), "--no-docs", "--silent"])
    doc = json.loads(out.read_text())
    assert code == 0, doc["raw"]
    assert doc["backends"] == ["postgresql"]
    revs = {t: doc["trees"][t]["schema_revisions"]["postgresql"] for t in revisions.TREES}
    assert revs["base"] != revs["head"]
    assert doc["summary"][0]["ratio"] > 0
