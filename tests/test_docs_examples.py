"""Runs the examples in ``docs/*.md``, so the documentation cannot rot.

How to mark an example (any page in ``docs/``): put an HTML comment on the line right
before the opening fence. Markdown renderers hide the comment.

``<!-- example: run -->`` before a ```` ```python ```` block
    The block runs as a script of its own (a fresh interpreter, the working directory a
    temporary one) against a fresh, migrated SQLite database named by
    ``PRISMQ_QUEUE_DATABASE_URL``, so ``Database()`` finds it. It must exit 0: check what it
    shows with ``assert``. Each example is complete on its own (imports included).

``<!-- example: cli -->`` before a ```` ```console ```` block
    Every line starting with ``$ prismq-queue `` runs, in order, as a subprocess
    (``python -m queue_core.cli ...``) against a fresh, migrated SQLite database named by
    ``PRISMQ_QUEUE_DATABASE_URL``, and must exit 0. The lines of one block share that
    database (ids start at 1). Other lines are sample output and are not checked. A line
    ending in a backslash continues on the next one. ``NAME=value`` words before
    ``prismq-queue`` set environment variables for that command.

A marker of another kind, or one not followed by a fence of the right language, fails the
test: a typo cannot silently switch an example off. A page whose examples need a setup of
their own (a PostgreSQL server, say) can use a kind of its own, run by its own test module,
once that kind is listed in ``EXTERNAL_KINDS`` below with the module that runs it. To show
an example that must not run (a server that never exits, say), leave the marker out.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
TIMEOUT_SECONDS = 120

MARKER = re.compile(r"^<!--\s*example:\s*(?P<kind>[\w-]+)\s*-->\s*$")
FENCE = re.compile(r"^(?P<fence>`{3,})\s*(?P<lang>[\w+-]*)\s*$")
ENV_WORD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
LANGUAGE_OF = {"run": "python", "cli": "console"}
COMMANDS = {"prismq-queue": [sys.executable, "-m", "queue_core.cli"]}
"""Commands a ``cli`` example may run, and how; add an entry to allow another program."""
EXTERNAL_KINDS = {
    "python-sqlite-to-postgresql": "tests/queue_core/maintenance/test_docs.py",
}
"""Marker kinds that another test module runs (kind: that module); skipped here."""


@dataclass(frozen=True)
class Example:
    source: str  # "docs/page.md:12", where the marker is
    kind: str
    code: str
    problem: str | None = None


def find_examples(markdown: str, name: str) -> list[Example]:
    """The marked examples of one Markdown page, in order."""
    lines = markdown.splitlines()
    examples = []
    for number, line in enumerate(lines):
        marker = MARKER.match(line.strip())
        if not marker:
            continue
        kind, source = marker["kind"], f"{name}:{number + 1}"
        fence = FENCE.match(lines[number + 1].strip()) if number + 1 < len(lines) else None
        if kind in EXTERNAL_KINDS:
            continue
        wanted = LANGUAGE_OF.get(kind)
        if wanted is None:
            known = ", ".join([*LANGUAGE_OF, *EXTERNAL_KINDS])
            problem = f"unknown example kind {kind!r} (known: {known})"
            examples.append(Example(source, kind, "", problem))
            continue
        if fence is None or fence["lang"] != wanted:
            problem = f"`example: {kind}` must be followed at once by a ```{wanted} fence"
            examples.append(Example(source, kind, "", problem))
            continue
        body: list[str] = []
        for candidate in lines[number + 2 :]:
            if candidate.strip() == fence["fence"]:
                break
            body.append(candidate)
        else:
            examples.append(Example(source, kind, "", "the fence is never closed"))
            continue
        examples.append(Example(source, kind, "\n".join(body) + "\n"))
    return examples


def console_commands(block: str) -> list[str]:
    """The ``$ `` command lines of a console block, continuations joined."""
    commands: list[str] = []
    pending: str | None = None
    for line in block.splitlines():
        if pending is not None:
            pending += " " + line.strip()
        elif line.startswith("$ "):
            pending = line[2:].strip()
        else:
            continue
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
            continue
        commands.append(pending)
        pending = None
    if pending is not None:
        commands.append(pending)
    return commands


def _all_examples() -> list[Example]:
    found: list[Example] = []
    for page in sorted(DOCS.glob("*.md")):
        found += find_examples(page.read_text(encoding="utf-8"), f"docs/{page.name}")
    return found


EXAMPLES = _all_examples()


def _environment(database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRISMQ_QUEUE_")}
    env["PRISMQ_QUEUE_DATABASE_URL"] = database_url
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def _explain(example: Example, what: str, done: subprocess.CompletedProcess[str]) -> str:
    return (
        f"{example.source}: {what} exited {done.returncode}\n"
        f"--- stdout ---\n{done.stdout}\n--- stderr ---\n{done.stderr}"
    )


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.source for e in EXAMPLES])
def test_documented_example(example: Example, sqlite_url: str, tmp_path: Path) -> None:
    assert example.problem is None, f"{example.source}: {example.problem}"
    env = _environment(sqlite_url)
    if example.kind == "run":
        script = tmp_path / "example.py"
        script.write_text(example.code, encoding="utf-8")
        done = subprocess.run(
            [sys.executable, str(script)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_SECONDS,
        )
        assert done.returncode == 0, _explain(example, "the script", done)
        return
    commands = console_commands(example.code)
    assert commands, f"{example.source}: no `$ ` command lines in the block"
    for command in commands:
        words = shlex.split(command)
        extra = {}
        while words and ENV_WORD.match(words[0]):
            name, _, value = words.pop(0).partition("=")
            extra[name] = value
        assert words, f"{example.source}: {command!r} has no command"
        assert words[0] in COMMANDS, f"{example.source}: {words[0]!r} is not a known command"
        done = subprocess.run(
            [*COMMANDS[words[0]], *words[1:]],
            cwd=tmp_path,
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=TIMEOUT_SECONDS,
        )
        assert done.returncode == 0, _explain(example, f"$ {command}", done)


# --- the marker parser itself ---

PAGE = """# A page

<!-- example: run -->
```python
print("ran")
```

```python
print("not marked: shown, not run")
```

<!-- example: cli -->
```console
$ prismq-queue enqueue demo.echo \\
    --payload '{"n": 1}'
{"task_id": 1}
$ prismq-queue stats
```

<!-- example: rnu -->
```python
```

<!-- example: cli -->

```console
$ prismq-queue stats
```

<!-- example: python-sqlite-to-postgresql -->
```python
print("run by the maintenance docs test")
```
"""


def test_marker_parser() -> None:
    found = find_examples(PAGE, "page.md")
    assert [(e.source, e.kind, e.problem is None) for e in found] == [
        ("page.md:3", "run", True),
        ("page.md:12", "cli", True),
        ("page.md:20", "rnu", False),
        ("page.md:24", "cli", False),  # a blank line between marker and fence
    ]  # the external kind at the end is left to its own module
    assert found[0].code == 'print("ran")\n'
    assert console_commands(found[1].code) == [
        "prismq-queue enqueue demo.echo --payload '{\"n\": 1}'",
        "prismq-queue stats",
    ]


def test_docs_have_examples() -> None:
    assert any(e.kind == "run" for e in EXAMPLES)
    assert any(e.kind == "cli" for e in EXAMPLES)
