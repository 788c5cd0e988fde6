"""docs/workers.md's examples run here, so they cannot rot.

Markers (HTML comments, hidden when rendered) right before a fence:
``<!-- workers-example: module NAME.py -->`` (python): written to NAME.py in the working
directory; ``<!-- workers-example: commands -->`` (console): each ``$ prismq-queue ...`` line
runs in order against a fresh SQLite database; ``<!-- workers-example: run -->`` (python):
runs as a script against a migrated database.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from queue_core.settings import sqlite_url_for
from tests.workers.conftest import REPO_ROOT

PAGE = REPO_ROOT / "docs" / "workers.md"
MARKER = re.compile(
    r"^<!--\s*workers-example:\s*(?P<kind>module|commands|run)\s*(?P<arg>\S*)\s*-->$"
)


def examples() -> list[tuple[str, str, str]]:
    """(kind, argument, fenced code) for every marked example, in page order."""
    lines = PAGE.read_text(encoding="utf-8").splitlines()
    found = []
    for number, line in enumerate(lines):
        marker = MARKER.match(line.strip())
        if not marker:
            continue
        assert lines[number + 1].startswith("```"), f"workers.md:{number + 1}: no fence"
        body = []
        for candidate in lines[number + 2 :]:
            if candidate.startswith("```"):
                break
            body.append(candidate)
        found.append((marker["kind"], marker["arg"], "\n".join(body) + "\n"))
    return found


def run(args: list[str], cwd: Path, url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRISMQ_QUEUE_")}
    env["PRISMQ_QUEUE_DATABASE_URL"] = url
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


def test_the_page_has_its_examples() -> None:
    kinds = [kind for kind, _, _ in examples()]
    assert kinds.count("module") >= 1
    assert kinds.count("commands") >= 1
    assert kinds.count("run") >= 1


# The commands run in one interpreter, one after the other, as `prismq-queue` would run them:
# one start-up instead of one per command.
DRIVER = """
import json, sys
from queue_core.cli import main
for argv in json.loads(sys.argv[1]):
    print(SEPARATOR, flush=True)
    code = main(argv)
    if code:
        sys.exit(code)
""".replace("SEPARATOR", repr("-- next command --"))


def test_handler_module_and_worker_commands(tmp_path: Path) -> None:
    url = sqlite_url_for(tmp_path / "docs.db")
    commands = []
    for kind, argument, code in examples():
        if kind == "module":
            (tmp_path / argument).write_text(code, encoding="utf-8")
        elif kind == "commands":
            for line in code.splitlines():
                if line.startswith("$ prismq-queue "):
                    commands.append(shlex.split(line[2:])[1:])
    commands.append(["tasks", "show", "2"])
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER, encoding="utf-8")
    done = run([sys.executable, str(driver), json.dumps(commands)], tmp_path, url)
    outputs = done.stdout.split("-- next command --\n")[1:]
    assert len(outputs) == len(commands)
    shown = json.loads(outputs[-2])  # the page's last command: `tasks show 1`
    assert (shown["status"], shown["result"]) == ("completed", {"sent": True, "order": 42})
    assert json.loads(outputs[-1])["result"] == {"width": 320}


def test_embedding_example(tmp_path: Path, sqlite_url: str) -> None:
    for kind, _, code in examples():
        if kind == "run":
            script = tmp_path / "example.py"
            script.write_text(code, encoding="utf-8")
            run([sys.executable, str(script)], tmp_path, sqlite_url)
