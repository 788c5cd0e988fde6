"""The `prismq-queue` command (CONTRACT §7), run as a real subprocess on both backends.

State is set up in-process through the repositories; each command under test runs as
``python -m queue_core.cli``. Commands that do not depend on each other run concurrently
to keep the suite quick.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from queue_core.database import Database
from queue_core.repositories import LeaseRepository, TaskRepository, WorkerRepository
from queue_core.settings import sqlite_url_for

TIMEOUT = 120
TASK_FIELDS = {
    "task_id",
    "type",
    "status",
    "priority",
    "attempts",
    "max_attempts",
    "payload",
    "compatibility",
    "idempotency_key",
    "run_after_utc",
    "created_at_utc",
    "updated_at_utc",
    "processing_started_utc",
    "finished_at_utc",
    "locked_by",
    "lease_until_utc",
    "cancel_requested",
    "error_message",
    "result",
}
STATS_FIELDS = {
    "total_tasks",
    "queued_tasks",
    "leased_tasks",
    "processing_tasks",
    "completed_tasks",
    "failed_tasks",
    "cancelled_tasks",
    "oldest_queued_age_seconds",
    "by_type",
    "workers_active",
}


@dataclass
class Run:
    args: list[str]
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def one_error_line(self) -> str:
        """A user's mistake: one line on stderr, no traceback."""
        lines = self.err.strip().splitlines()
        assert len(lines) == 1, f"{self.args}: stderr is not one line:\n{self.err}"
        assert lines[0].startswith("error: "), lines[0]
        assert "Traceback" not in self.err
        return lines[0]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRISMQ_QUEUE_")}
    env["PYTHONIOENCODING"] = "utf-8"
    env.update(extra)
    return env


Command = list[str] | tuple[list[str], dict[str, str]]
"""Arguments, or arguments with the environment to run them in."""


def run_all(commands: list[Command], url: str | None) -> list[Run]:
    """Run the commands at the same time; ``--database-url url`` goes after each one."""
    started = []
    for command in commands:
        args, env = command if isinstance(command, tuple) else (command, _env())
        full = [*args, "--database-url", url] if url else args
        process = subprocess.Popen(
            [sys.executable, "-m", "queue_core.cli", *full],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )
        started.append((args, process))
    runs = []
    for args, process in started:
        out, err = process.communicate(timeout=TIMEOUT)
        runs.append(Run(args, process.returncode, out, err))
    return runs


def run(args: list[str], url: str | None, env: dict[str, str] | None = None) -> Run:
    return run_all([(args, env or _env())], url)[0]


def _ok(result: Run) -> Run:
    assert result.code == 0, f"{result.args} exited {result.code}: {result.err}"
    return result


# --- on both backends ---


def test_enqueue_prints_the_task_with_every_contract_field(db_url: str) -> None:
    enqueued = _ok(
        run(
            [
                "enqueue",
                "media.render",
                "--payload",
                '{"video": 42, "name": "ünïcode"}',
                "--priority",
                "7",
                "--compatibility",
                '{"gpu": true}',
                "--max-attempts",
                "3",
                "--idempotency-key",
                "render-42",
                "--delay",
                "60",
            ],
            db_url,
        )
    ).json()
    assert set(enqueued) >= TASK_FIELDS
    assert enqueued["type"] == "media.render"
    assert enqueued["payload"] == {"video": 42, "name": "ünïcode"}
    assert (enqueued["priority"], enqueued["max_attempts"], enqueued["attempts"]) == (7, 3, 0)
    assert enqueued["compatibility"] == {"gpu": True}
    assert (enqueued["idempotency_key"], enqueued["status"]) == ("render-42", "queued")
    assert enqueued["run_after_utc"].endswith("+00:00")
    with Database(db_url) as db:
        stored = TaskRepository(db).get(enqueued["task_id"])
    assert 55 < (stored.run_after_utc - stored.created_at_utc).total_seconds() <= 60
    assert stored.model_dump(mode="json") == enqueued

    plain, replay, conflict = run_all(
        [
            ["enqueue", "demo.hello"],
            [
                *("enqueue", "media.render", "--idempotency-key", "render-42"),
                *("--payload", '{"name": "ünïcode", "video": 42}'),
            ],
            ["enqueue", "media.render", "--payload", "{}", "--idempotency-key", "render-42"],
        ],
        db_url,
    )
    assert _ok(plain).json()["payload"] == {}
    assert _ok(replay).json() == enqueued
    assert conflict.code == 1
    assert "already used by task" in conflict.one_error_line()


def test_tasks_and_stats_commands(db_url: str) -> None:
    with Database(db_url) as db:
        tasks, leases = TaskRepository(db), LeaseRepository(db)
        WorkerRepository(db).register("w1")
        running_id = tasks.enqueue(type="a", payload={"n": 1}).task.task_id
        queued = tasks.enqueue(type="a").task.task_id
        [running] = leases.claim("w1", ["a"], lease_seconds=600)  # the older of the two
        assert running.task_id == running_id
        to_cancel = tasks.enqueue(type="b").task.task_id
        done = tasks.enqueue(type="c").task.task_id
        [c] = leases.claim("w1", ["c"], lease_seconds=600)
        leases.complete(c.lease, {"ok": True})
        failed = tasks.enqueue(type="d").task.task_id
        [d] = leases.claim("w1", ["d"], lease_seconds=600)
        leases.fail(d.lease, "boom", permanent=True)
        expected_stats = tasks.stats()

    show, listed, table, filtered, stats, stats_text, missing = run_all(
        [
            ["tasks", "show", str(done)],
            ["tasks", "list", "--json"],
            ["tasks", "list"],
            ["tasks", "list", "--json", "--status", "queued", "--type", "a", "--limit", "1"],
            ["stats", "--json"],
            ["stats"],
            ["tasks", "show", "999999"],
        ],
        db_url,
    )
    shown = _ok(show).json()
    assert set(shown) >= TASK_FIELDS
    assert (shown["task_id"], shown["status"], shown["result"]) == (done, "completed", {"ok": True})
    everything = _ok(listed).json()
    assert [t["task_id"] for t in everything] == sorted(
        [queued, running_id, to_cancel, done, failed], reverse=True
    )
    assert all(set(t) >= TASK_FIELDS for t in everything)
    assert [t["task_id"] for t in _ok(filtered).json()] == [queued]
    header, *rows = _ok(table).out.splitlines()
    assert header.split()[:5] == ["ID", "TYPE", "STATUS", "PRI", "ATTEMPTS"]
    assert [row.split()[0] for row in rows] == [str(t["task_id"]) for t in everything]
    assert "boom" in table.out
    got = _ok(stats).json()
    assert set(got) == STATS_FIELDS
    assert got["processing_tasks"] == got["leased_tasks"] == 1
    assert got["workers_active"] == 1
    assert {k: v for k, v in got.items() if k != "oldest_queued_age_seconds"} == {
        k: v for k, v in expected_stats.model_dump().items() if k != "oldest_queued_age_seconds"
    }
    assert "total      5" in _ok(stats_text).out
    assert missing.code == 1
    assert missing.one_error_line() == "error: task 999999 not found"

    cancel, cancel_running, cancel_done, retry, retry_queued, retry_missing = run_all(
        [
            ["tasks", "cancel", str(to_cancel)],
            ["tasks", "cancel", str(running_id)],
            ["tasks", "cancel", str(done)],
            ["tasks", "retry", str(failed)],
            ["tasks", "retry", str(queued)],
            ["tasks", "retry", "999999"],
        ],
        db_url,
    )
    assert _ok(cancel).json()["status"] == "cancelled"
    asked = _ok(cancel_running).json()
    assert (asked["status"], asked["cancel_requested"]) == ("leased", True)
    assert cancel_done.code == 1
    assert cancel_done.one_error_line() == f"error: cannot cancel task {done}: it is completed"
    retried = _ok(retry).json()
    assert (retried["status"], retried["attempts"]) == ("queued", 0)
    assert retry_queued.code == 1
    assert retry_queued.one_error_line() == f"error: cannot retry task {queued}: it is queued"
    assert retry_missing.code == 1


# --- usage errors and the environment (about the command line, not the database) ---


def test_bad_usage_exits_2_with_one_line(sqlite_url: str, tmp_path: Path) -> None:
    small = _env(PRISMQ_QUEUE_PAYLOAD_MAX_BYTES="16")
    cases = [
        (["enqueue", "t", "--payload", "{bad"], "not valid JSON"),
        (["enqueue", "t", "--payload", "[1, 2]"], "must be a JSON object"),
        (["enqueue", "t", "--priority", "1001"], "priority"),
        (["enqueue", "t", "--priority", "high"], "--priority"),
        (["enqueue", "t", "--max-attempts", "0"], "max_attempts"),
        (["enqueue", "t", "--delay", "-5"], "--delay"),
        (["enqueue", "t", "--payload", '{"x": NaN}'], "NaN"),
        (["tasks", "show", "abc"], "abc"),
    ]
    results = run_all([args for args, _ in cases], sqlite_url)
    oversize = run(["enqueue", "t", "--payload", '{"s": "0123456789abcdef"}'], sqlite_url, small)
    for (args, phrase), result in zip(cases, results, strict=True):
        assert result.code == 2, f"{args}: exit {result.code}: {result.err}"
        assert phrase in result.one_error_line(), (args, result.err)
    assert oversize.code == 2
    assert "the limit is 16" in oversize.one_error_line()
    with Database(sqlite_url) as db:
        assert TaskRepository(db).stats().total_tasks == 0


def test_failures_exit_1_with_one_line(tmp_path: Path) -> None:
    blank = sqlite_url_for(tmp_path / "never-migrated.db")
    no_schema, unreachable = run_all(
        [
            ["tasks", "list", "--database-url", blank],
            [
                "stats",
                "--database-url",
                "postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=3",
            ],
        ],
        None,
    )
    assert no_schema.code == 1
    assert "run `prismq-queue db upgrade` first" in no_schema.one_error_line()
    assert unreachable.code == 1
    assert "database unavailable" in unreachable.one_error_line()


def test_database_location_from_the_environment(sqlite_url: str, tmp_path: Path) -> None:
    with Database(sqlite_url) as db:
        TaskRepository(db).enqueue(type="from.env")
    path = sqlite_url.removeprefix("sqlite:///")
    elsewhere = sqlite_url_for(tmp_path / "other" / "empty.db")
    by_path, by_url, flag_wins = run_all(
        [
            (["stats", "--json"], _env(PRISMQ_QUEUE_DB_PATH=path)),
            (["stats", "--json"], _env(PRISMQ_QUEUE_DATABASE_URL=sqlite_url)),
            (
                ["stats", "--json", "--database-url", sqlite_url],
                _env(PRISMQ_QUEUE_DATABASE_URL=elsewhere, PRISMQ_QUEUE_DB_PATH=path + ".nope"),
            ),
        ],
        None,
    )
    for result in (by_path, by_url, flag_wins):
        assert _ok(result).json()["by_type"] == {"from.env": {"queued": 1}}


def test_help_lists_the_commands() -> None:
    main_help = _ok(run(["--help"], None)).out
    for command in ("db", "enqueue", "tasks", "stats", "maintenance"):
        assert command in main_help
