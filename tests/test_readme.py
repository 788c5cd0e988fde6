"""The README's quick start stays true (issue 12 item 16): every command it shows runs, and
every task it enqueues is served by the demo handlers `up` runs, so none stays queued."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from queue_core.database import Database
from queue_core.repositories import TaskRepository
from queue_core.settings import sqlite_url_for

README = Path(__file__).resolve().parents[1] / "README.md"
TIMEOUT = 120
BLOCK = re.compile(r"^```bash\n(?P<body>.*?)^```", re.MULTILINE | re.DOTALL)


def quick_start_commands() -> list[list[str]]:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = []
    for block in BLOCK.finditer(section):
        for line in block["body"].splitlines():
            words = shlex.split(line, comments=True)
            if words[:1] == ["prismq-queue"] and words[1:2] != ["up"]:
                commands.append(words[1:])
    return commands


def test_the_quick_start_runs_and_its_tasks_are_served(tmp_path: Path) -> None:
    commands = quick_start_commands()
    enqueued = [words[1] for words in commands if words[0] == "enqueue"]
    assert enqueued, "the quick start enqueues nothing any more"
    url = sqlite_url_for(tmp_path / "queue.db")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRISMQ_QUEUE_")}
    env["PRISMQ_QUEUE_DATABASE_URL"] = url
    cli = [sys.executable, "-m", "queue_core.cli"]
    burst = ["worker", "--import", "workers.demo", "--burst"]  # what `up` runs, once
    for words in [["db", "upgrade"], *commands, burst]:
        done = subprocess.run(
            [*cli, *words],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        assert done.returncode == 0, f"prismq-queue {shlex.join(words)}: {done.stderr}"
    with Database(url) as db:
        tasks = TaskRepository(db).list()
    assert sorted(t.type for t in tasks) == sorted(enqueued)
    assert {t.status.value for t in tasks} == {"completed"}, [(t.type, t.status) for t in tasks]
