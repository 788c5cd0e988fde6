"""Nothing outside ``queue_core/dialects/`` asks which database it runs on (issue 11 A).

What differs between SQLite and PostgreSQL is a method of the Dialect. Checked on the source
with ``ast``: a comparison with a database name ("sqlite", "postgresql", ...), with a dialect's
or engine's name (``db.dialect.name``, ``engine.dialect.name``, ``url.get_backend_name()``),
a lookup keyed by one, or a call of an ``is_sqlite``-style helper all count.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

PACKAGES = ("queue_core", "api", "workers", "migrations")

SEAM = Path("queue_core/dialects")

# Where branching on the database is what the code is for, and why.
ALLOWED = {
    # SQLAlchemy calls a TypeDecorator with its own dialect object to pick the column type
    # and the bind conversion (timestamptz on PostgreSQL, integer microseconds on SQLite).
    Path("queue_core/types.py"),
    # Alembic: batch mode (table copies) is how SQLite alters tables.
    Path("migrations/env.py"),
    # The views of revision 0002, per dialect: a migration's frozen SQL, which Alembic asks
    # for by its dialect's name (0002 imports this path and never changes).
    Path("queue_core/maintenance/views.py"),
}
# Revisions 0001 and 0002 never change (TEAM rule); later ones are checked.
FROZEN_REVISIONS = ("0001_", "0002_")

DATABASE_NAMES = frozenset({"sqlite", "postgresql", "postgres", "psycopg", "sqlite3"})
NAME_GETTERS = frozenset({"get_backend_name", "get_dialect"})
HELPER_PREFIXES = ("is_sqlite", "is_postgres", "is_pg")


def _names_database(node: ast.AST) -> bool:
    """True when ``node`` is a database name or evaluates to the name of one."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value.lower() in DATABASE_NAMES
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return any(_names_database(element) for element in node.elts)
    if isinstance(node, ast.Attribute):
        # x.dialect.name, engine.dialect.name, db.backend.name, x.dialect (a name string)
        if node.attr == "name" and isinstance(node.value, ast.Attribute):
            return node.value.attr in ("dialect", "backend", "drivername")
        return node.attr in ("drivername",)
    if isinstance(node, ast.Call):
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        return name in NAME_GETTERS
    return False


def branches(source: str, filename: str = "<source>") -> list[tuple[int, str]]:
    """(line, what) of every place the source asks which database it runs on."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            if any(_names_database(operand) for operand in operands):
                found.append((node.lineno, "compares with a database name"))
        elif isinstance(node, ast.Subscript) and _names_database(node.slice):
            found.append((node.lineno, "looks up by a database name"))
        elif (
            isinstance(node, ast.Dict)
            and sum(1 for key in node.keys if key is not None and _names_database(key)) >= 2
        ):
            found.append((node.lineno, "maps database names to behaviour"))
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name.startswith(HELPER_PREFIXES):
                found.append((node.lineno, f"calls {name}"))
        elif isinstance(node, ast.FunctionDef) and node.name.startswith(HELPER_PREFIXES):
            found.append((node.lineno, f"defines {node.name}"))
    return found


def _checked_files(root: Path) -> list[Path]:
    files = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            relative = path.relative_to(root)
            if relative.is_relative_to(SEAM) or relative in ALLOWED:
                continue
            if relative.parent.name == "versions" and relative.name.startswith(FROZEN_REVISIONS):
                continue
            files.append(path)
    return files


def violations(root: Path = ROOT) -> list[str]:
    problems = []
    for path in _checked_files(root):
        for line, what in branches(path.read_text(encoding="utf-8"), str(path)):
            problems.append(f"{path.relative_to(root).as_posix()}:{line} {what}")
    return problems


def test_nothing_outside_the_dialects_branches_on_the_database() -> None:
    assert (ROOT / SEAM / "__init__.py").is_file()
    assert len(_checked_files(ROOT)) > 50  # the walk found the code
    assert violations() == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('if db.dialect.name == "sqlite": pass', 1),
        ('if "postgresql" != backend: pass', 1),
        ('x = engine.dialect.name in ("sqlite", "postgres")', 1),
        ("if url.get_backend_name() == name: pass", 1),
        ("if is_sqlite(db): pass", 1),
        ("def is_sqlite(db): return True", 1),
        ('SQL = {"sqlite": a, "postgresql": b}', 1),
        ("sql = MODULES[db.dialect.name]", 1),
        ('if url.drivername == "postgresql+psycopg": pass', 1),
        # What the seam asks instead, and unrelated names, pass.
        ("if db.dialect.database_file(db.engine) is None: pass", 0),
        ('log.info("running on %s", db.dialect.name)', 0),
        ('if status == "queued": pass', 0),
        ('path = tmp / "queue.sqlite"', 0),
    ],
)
def test_the_checker_sees_every_form_of_branching(source: str, expected: int) -> None:
    assert len(branches(source)) == expected, branches(source)
