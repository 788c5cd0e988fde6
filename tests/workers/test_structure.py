"""The worker stays made of small parts (issue 11: no class over about 300 lines in workers/)."""

from __future__ import annotations

import ast
from pathlib import Path

WORKERS = Path(__file__).resolve().parents[2] / "workers"
MAX_CLASS_LINES = 320  # "about 300": docstrings included


def test_no_class_in_workers_is_over_about_300_lines() -> None:
    too_long = []
    for path in sorted(WORKERS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_CLASS_LINES:
                    too_long.append(f"{path.relative_to(WORKERS.parent)}:{node.name} {lines}")
    assert not too_long


def test_the_sweep_runs_in_one_place_in_a_worker() -> None:
    callers = [
        path.name
        for path in sorted(WORKERS.rglob("*.py"))
        if "sweep(self._db" in path.read_text(encoding="utf-8")
        or "import sweep" in path.read_text(encoding="utf-8")
        or ", sweep," in path.read_text(encoding="utf-8")
    ]
    assert callers == ["housekeeping.py"]
