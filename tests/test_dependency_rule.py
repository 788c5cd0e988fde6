"""CONTRACT §1: queue_core imports neither api nor workers; api and workers never import
each other. Checked on the source with ``ast``, so a lazy import inside a function counts."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

FORBIDDEN: dict[str, frozenset[str]] = {
    "queue_core": frozenset({"api", "workers"}),
    "api": frozenset({"workers"}),
    "workers": frozenset({"api"}),
    "migrations": frozenset({"api", "workers"}),
}

DYNAMIC_IMPORTERS = frozenset({"import_module", "__import__"})


def imported_packages(source: str, filename: str = "<source>") -> list[tuple[int, str]]:
    """(line, top-level package) of every absolute import, including
    ``importlib.import_module("pkg...")`` and ``__import__("pkg")`` with a literal name."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            first = node.args[0]
            if (
                name in DYNAMIC_IMPORTERS
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
            ):
                found.append((node.lineno, first.value.split(".")[0]))
    return found


def violations(package: str, root: Path = ROOT) -> list[str]:
    forbidden = FORBIDDEN[package]
    problems = []
    for path in sorted((root / package).rglob("*.py")):
        for line, imported in imported_packages(path.read_text(encoding="utf-8"), str(path)):
            if imported in forbidden:
                problems.append(f"{path.relative_to(root).as_posix()}:{line} imports {imported}")
    return problems


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_respects_the_dependency_rule(package: str) -> None:
    assert (ROOT / package).is_dir()
    assert violations(package) == []


def test_the_checker_sees_every_form_of_import(tmp_path: Path) -> None:
    pkg = tmp_path / "api"
    pkg.mkdir()
    (pkg / "ok.py").write_text("import queue_core\nfrom . import sibling\n")
    (pkg / "bad.py").write_text(
        "import os\n"
        "from workers.runtime import Worker\n"
        "def lazy():\n"
        "    import workers.cli\n"
        "    import importlib\n"
        "    importlib.import_module('workers.integration')\n"
        "    __import__('workers')\n"
    )
    assert violations("api", tmp_path) == [
        "api/bad.py:2 imports workers",
        "api/bad.py:4 imports workers",
        "api/bad.py:6 imports workers",
        "api/bad.py:7 imports workers",
    ]


# --- private modules stay private (issue 12 item 22) ---

PUBLIC_USERS = ("api", "workers")


def imported_modules(source: str, filename: str = "<source>") -> list[tuple[int, str]]:
    """(line, full dotted name) of every absolute import, ``from x import y`` as ``x.y``."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def private_uses(package: str, root: Path = ROOT) -> list[str]:
    """Imports of another package's private modules or names (a ``_``-prefixed part), and
    queries of a model's ``__table__``: the seams are public modules and repository methods."""
    problems = []
    for path in sorted((root / package).rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        where = path.relative_to(root).as_posix()
        for line, name in imported_modules(source, str(path)):
            parts = name.split(".")
            if parts[0] == package or parts[0] not in FORBIDDEN:
                continue
            if any(part.startswith("_") and not part.startswith("__") for part in parts[1:]):
                problems.append(f"{where}:{line} imports {name}")
        for node in ast.walk(ast.parse(source, str(path))):
            if isinstance(node, ast.Attribute) and node.attr == "__table__":
                problems.append(f"{where}:{node.lineno} reads a model's __table__")
    return problems


@pytest.mark.parametrize("package", PUBLIC_USERS)
def test_no_private_imports_across_packages(package: str) -> None:
    assert private_uses(package) == []


def test_the_private_import_check_can_fail(tmp_path: Path) -> None:
    (tmp_path / "api").mkdir()
    (tmp_path / "api" / "bad.py").write_text(
        "from queue_core.repositories._common import TASKS\n"
        "import queue_core.cli._common\n"
        "from queue_core.validation import _unstorable\n"
        "from queue_core.models import TaskRow\n"
        "T = TaskRow.__table__\n"
    )
    assert len(private_uses("api", tmp_path)) == 4
