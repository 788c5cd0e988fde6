"""The command line as a user meets it (issue 12, items 10, 11, 12, 17, 23): bad input is one
line on stderr, reading never creates anything, the newer commands and options, and a
start-up that imports only what the command runs. Each command runs as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import click
import pytest

from queue_core.cli import COMMANDS, ENTRY_POINT_GROUP
from queue_core.cli.options import LazyCommand
from queue_core.clock import utcnow
from queue_core.database import Database
from queue_core.repositories import LeaseRepository, TaskRepository, WorkerRepository
from queue_core.settings import sqlite_url_for
from tests.queue_core.test_cli import TASK_FIELDS, Run, _env, _ok, run, run_all

TIMEOUT = 120
LOG_FIELDS = {"log_id", "task_id", "at_utc", "level", "message", "details"}
WORKER_FIELDS = {"worker_id", "capabilities", "heartbeat_utc", "status"}
BAD_URL = "not a url"


def run_with_input(args: list[str], stdin: str, cwd: Path | None = None) -> Run:
    done = subprocess.run(
        [sys.executable, "-m", "queue_core.cli", *args],
        input=stdin,
        env=_env(),
        cwd=cwd,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=TIMEOUT,
        check=False,
    )
    return Run(args, done.returncode, done.stdout, done.stderr)


# --- item 23: lazy start-up ---


def test_help_imports_no_command_module_nor_the_heavy_stack() -> None:
    probe = (
        "import sys\n"
        "from queue_core.cli import main\n"
        "code = main(['--help'])\n"
        "heavy = ['fastapi', 'uvicorn', 'sqlalchemy', 'sqlalchemy.orm', 'pydantic_settings',\n"
        "         'queue_core.models', 'queue_core.cli.tasks', 'workers.runtime', 'api.app']\n"
        "print(code, sorted(m for m in heavy if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=TIMEOUT, check=True
    )
    last = done.stdout.strip().splitlines()[-1]
    assert last == "0 []", done.stdout + done.stderr
    for name in ("db", "enqueue", "tasks", "stats", "workers", "maintenance", "worker", "up"):
        assert f"  {name} " in done.stdout


def _registered() -> dict[str, LazyCommand | click.Command]:
    from importlib.metadata import entry_points

    found: dict[str, LazyCommand | click.Command] = dict(COMMANDS)
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        found[entry.name] = entry.load()
    return found


@pytest.mark.parametrize("name", sorted(_registered()))
def test_the_short_help_of_a_lazy_command_is_the_commands_own(name: str) -> None:
    spec = _registered()[name]
    if not isinstance(spec, LazyCommand):
        pytest.skip(f"{name} is registered as a loaded command")
    command = spec.load()
    assert command.name == name
    assert spec.short_help == command.get_short_help_str(limit=1000)


# --- items 10 and 11: bad input is one line ---


def test_a_bad_database_url_is_one_line_and_exit_2(tmp_path: Path) -> None:
    commands: list[tuple[list[str], dict[str, str]]] = []
    for args in (["stats"], ["worker", "--import", "workers.demo", "--burst"], ["up"]):
        commands.append(([*args, "--database-url", BAD_URL], _env()))
        commands.append(([*args], _env(PRISMQ_QUEUE_DATABASE_URL="bogus")))
    commands.append((["--database-url", BAD_URL, "tasks", "list"], _env()))
    commands.append((["stats", "--database-url", "mysql://nobody@127.0.0.1/none"], _env()))
    for result in run_all(commands, None):
        assert result.code == 2, f"{result.args}: exit {result.code}: {result.err}"
        line = result.one_error_line()
        assert "--database-url" in line or "PRISMQ_QUEUE_DATABASE_URL" in line, line


def test_a_bad_delay_is_one_line_and_exit_2(sqlite_url: str) -> None:
    values = ["1e15", "inf", "nan", "-inf", "1e300"]
    results = run_all([["enqueue", "t", "--delay", value] for value in values], sqlite_url)
    for value, result in zip(values, results, strict=True):
        assert result.code == 2, f"--delay {value}: exit {result.code}: {result.err}"
        assert "--delay" in result.one_error_line()
    with Database(sqlite_url) as db:
        assert TaskRepository(db).stats().total_tasks == 0


# --- item 12: reading never creates a file or a directory ---

READ_ONLY = [
    ["stats"],
    ["stats", "--json"],
    ["tasks", "show", "1"],
    ["tasks", "list"],
    ["tasks", "logs", "1"],
    ["workers", "list"],
    ["db", "current"],
    ["maintenance", "status"],
    ["schedules", "list"],
    ["types", "list"],
]


def test_read_only_commands_never_create_a_database(tmp_path: Path) -> None:
    in_missing_dir = tmp_path / "no" / "such" / "dir" / "queue.db"
    missing_file = tmp_path / "queue.db"
    commands: list[list[str]] = []
    for path in (in_missing_dir, missing_file):
        url = sqlite_url_for(path)
        commands += [[*args, "--database-url", url] for args in READ_ONLY]
        commands.append(["--database-url", url, "stats"])
    for result in run_all(commands, None):
        assert result.code == 1, f"{result.args}: exit {result.code}: {result.err}"
        assert "there is no database at" in result.one_error_line()
    assert list(tmp_path.iterdir()) == []


def test_enqueue_creates_the_database_and_its_directory(tmp_path: Path) -> None:
    path = tmp_path / "new" / "queue.db"
    upgraded = _ok(run(["db", "upgrade"], sqlite_url_for(path)))
    assert "is at revision" in upgraded.out
    assert path.is_file()


def test_backup_never_creates_a_directory(sqlite_url: str, tmp_path: Path) -> None:
    dest = tmp_path / "nonexistent" / "dir" / "b.db"
    result = run(["maintenance", "backup", str(dest)], sqlite_url)
    assert result.code == 1
    assert "does not exist" in result.one_error_line()
    assert not dest.parent.parent.exists()


# --- item 17: the commands and options CONTRACT §7 names ---


def test_database_url_before_the_command(sqlite_url: str, tmp_path: Path) -> None:
    with Database(sqlite_url) as db:
        TaskRepository(db).enqueue(type="before")
    elsewhere = sqlite_url_for(tmp_path / "elsewhere.db")
    before, nested, after_wins = run_all(
        [
            ["--database-url", sqlite_url, "tasks", "list", "--json"],
            ["--database-url", sqlite_url, "maintenance", "status"],
            ["--database-url", elsewhere, "stats", "--json", "--database-url", sqlite_url],
        ],
        None,
    )
    assert [t["type"] for t in _ok(before).json()] == ["before"]
    assert "database" in _ok(nested).out
    assert _ok(after_wins).json()["total_tasks"] == 1
    assert not (tmp_path / "elsewhere.db").exists()


def test_payload_from_a_file_and_from_stdin(sqlite_url: str, tmp_path: Path) -> None:
    big = {"blob": "x" * 300_000, "n": 1}  # past what a shell passes as one argument
    payload_file = tmp_path / "payload.json"
    payload_file.write_text(json.dumps(big), encoding="utf-8")
    from_file = _ok(run(["enqueue", "t", "--payload", f"@{payload_file}"], sqlite_url)).json()
    assert from_file["payload"] == big
    from_stdin = run_with_input(
        ["enqueue", "t", "--payload", "-", "--database-url", sqlite_url], '{"from": "stdin"}'
    )
    assert _ok(from_stdin).json()["payload"] == {"from": "stdin"}
    missing, not_json = run_all(
        [
            ["enqueue", "t", "--payload", f"@{tmp_path / 'nope.json'}"],
            ["enqueue", "t", "--payload", f"@{tmp_path}"],
        ],
        sqlite_url,
    )
    for result in (missing, not_json):
        assert result.code == 2, result.err
        assert "--payload" in result.one_error_line()


def test_tasks_logs_workers_list_and_paging(db_url: str) -> None:
    with Database(db_url) as db:
        tasks = TaskRepository(db)
        ids = [tasks.enqueue(type="page", payload={"i": i}).task.task_id for i in range(5)]
        workers = WorkerRepository(db)
        workers.register("w-active", capabilities={"region": "us"})
        workers.register("w-stale")
        workers.stop("w-stale")
        [claimed] = LeaseRepository(db).claim("w-active", ["page"], lease_seconds=600)
        LeaseRepository(db).fail(claimed.lease, "boom", permanent=True)
        expected_logs = [log.model_dump(mode="json") for log in tasks.logs(claimed.task_id)]
        expected_page = [t.task_id for t in tasks.list(limit=2, before_id=ids[3])]

    logs_json, logs_text, workers_json, workers_text, page, no_logs = run_all(
        [
            ["tasks", "logs", str(claimed.task_id), "--json"],
            ["tasks", "logs", str(claimed.task_id)],
            ["workers", "list", "--json"],
            ["workers", "list"],
            ["tasks", "list", "--json", "--limit", "2", "--before-id", str(ids[3])],
            ["tasks", "logs", "999999"],
        ],
        db_url,
    )
    got_logs = _ok(logs_json).json()
    assert got_logs == expected_logs
    assert all(set(entry) == LOG_FIELDS for entry in got_logs)
    assert got_logs[0]["message"] == "enqueued"
    assert "boom" in _ok(logs_text).out
    assert len(logs_text.out.strip().splitlines()) == len(got_logs)

    listed = {w["worker_id"]: w for w in _ok(workers_json).json()}
    assert set(listed) == {"w-active", "w-stale"}
    assert all(set(w) >= WORKER_FIELDS for w in listed.values())
    assert (listed["w-active"]["status"], listed["w-stale"]["status"]) == ("active", "stale")
    assert listed["w-active"]["capabilities"] == {"region": "us"}
    header, *rows = _ok(workers_text).out.splitlines()
    assert header.split()[:2] == ["WORKER", "STATUS"]
    assert sorted(row.split()[:2] for row in rows) == [
        ["w-active", "active"],
        ["w-stale", "stale"],
    ]

    paged = _ok(page).json()
    assert [t["task_id"] for t in paged] == expected_page == [ids[2], ids[1]]
    assert all(set(t) >= TASK_FIELDS for t in paged)
    assert no_logs.code == 1
    assert no_logs.one_error_line() == "error: task 999999 not found"


def test_a_delay_within_range_still_works(sqlite_url: str) -> None:
    task = _ok(run(["enqueue", "t", "--delay", "3600"], sqlite_url)).json()
    with Database(sqlite_url) as db:
        stored = TaskRepository(db).get(task["task_id"])
    assert stored.run_after_utc > utcnow() + timedelta(minutes=55)


def test_ctx_exit_codes_reach_the_process() -> None:
    """Click returns (not raises) ctx.exit(code) outside standalone mode: keep the code."""
    from queue_core.cli._common import run_guarded

    @click.command()
    @click.pass_context
    def leave(ctx: click.Context) -> None:
        ctx.exit(3)

    @click.command()
    def fine() -> None:
        pass

    assert run_guarded(leave, []) == 3
    assert run_guarded(fine, []) == 0
