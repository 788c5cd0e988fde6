"""`prismq-queue schedules|types ...` and `enqueue --depends-on/--timeout-seconds` (CONTRACT §7),
in-process through the CLI's own entry point, on both backends."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from queue_core.cli import main
from queue_core.settings import sqlite_url_for


def _run(capsys: pytest.CaptureFixture[str], db_url: str, *argv: str) -> tuple[int, str, str]:
    code = main([*argv, "--database-url", db_url])
    out, err = capsys.readouterr()
    return code, out, err


def test_schedules_commands(capsys: pytest.CaptureFixture[str], db_url: str) -> None:
    code, out, _ = _run(
        capsys, db_url, "schedules", "add", "nightly", "report.daily", "0 6 * * *",
        "--timezone", "Europe/Prague", "--payload", '{"to": "ops"}', "--catch-up", "none",
    )  # fmt: skip
    assert code == 0
    added = json.loads(out)
    assert (added["name"], added["catch_up"], added["payload"]) == (
        "nightly",
        "none",
        {"to": "ops"},
    )
    code, _, err = _run(capsys, db_url, "schedules", "add", "nightly", "t", "* * * * *")
    assert code == 1
    assert "already exists" in err
    code, _, err = _run(capsys, db_url, "schedules", "add", "bad", "t", "61 * * * *")
    assert code == 2
    assert err.startswith("error: invalid cron expression")
    code, _, err = _run(
        capsys, db_url, "schedules", "add", "bad", "t", "* * * * *", "--timezone", "Mars/Base"
    )
    assert code == 2
    assert "unknown time zone" in err
    assert _run(capsys, db_url, "schedules", "pause", "nightly")[0] == 0
    code, out, _ = _run(capsys, db_url, "schedules", "list", "--json")
    assert [(s["name"], s["paused"]) for s in json.loads(out)] == [("nightly", True)]
    assert _run(capsys, db_url, "schedules", "resume", "nightly")[0] == 0
    code, out, _ = _run(capsys, db_url, "schedules", "run", "nightly")
    task = json.loads(out)
    assert (task["type"], task["schedule"], task["payload"]) == (
        "report.daily",
        "nightly",
        {"to": "ops"},
    )
    code, out, _ = _run(capsys, db_url, "schedules", "list")
    assert "nightly" in out
    assert "Europe/Prague" in out
    assert _run(capsys, db_url, "schedules", "remove", "nightly")[0] == 0
    code, _, err = _run(capsys, db_url, "schedules", "remove", "nightly")
    assert code == 1
    assert "not found" in err


def test_types_commands(capsys: pytest.CaptureFixture[str], db_url: str) -> None:
    assert _run(capsys, db_url, "enqueue", "gpu.render")[0] == 0
    code, out, _ = _run(
        capsys, db_url, "types", "limit", "gpu.render", "--max-running", "2", "--rate", "10/60"
    )
    assert code == 0
    assert json.loads(out)["rate"] == {"count": 10, "per_seconds": 60.0}
    assert _run(capsys, db_url, "types", "pause", "gpu.render")[0] == 0
    code, out, _ = _run(capsys, db_url, "types", "list", "--json")
    assert json.loads(out) == [
        {"type": "gpu.render", "paused": True, "max_running": 2,
         "rate": {"count": 10, "per_seconds": 60.0}, "queued": 1, "leased": 0}
    ]  # fmt: skip
    assert _run(capsys, db_url, "types", "resume", "gpu.render")[0] == 0
    code, out, _ = _run(capsys, db_url, "types", "limit", "gpu.render", "--clear")
    assert json.loads(out)["max_running"] is None
    for bad in (
        ["--rate", "5"],
        ["--rate", "0/10"],
        ["--max-running", "0"],
        [],
        ["--clear", "--rate", "1/1"],
    ):
        code, _, err = _run(capsys, db_url, "types", "limit", "gpu.render", *bad)
        assert code == 2, (bad, err)
        assert err.startswith("error:") or "Error" in err
    code, _, err = _run(capsys, db_url, "types", "pause", "bad type")
    assert code == 2


def test_enqueue_depends_on_and_timeout(capsys: pytest.CaptureFixture[str], db_url: str) -> None:
    for _ in range(2):
        assert _run(capsys, db_url, "enqueue", "a")[0] == 0
    code, out, _ = _run(
        capsys, db_url, "enqueue", "b", "--depends-on", "1", "2", "--timeout-seconds", "2.5"
    )
    assert code == 0
    task = json.loads(out)
    assert (task["depends_on"], task["timeout_seconds"]) == ([1, 2], 2.5)
    code, out, _ = _run(capsys, db_url, "enqueue", "c", "--depends-on", "1,2", "--depends-on", "3")
    assert json.loads(out)["depends_on"] == [1, 2, 3]
    code, _, err = _run(capsys, db_url, "enqueue", "b", "--depends-on", "99")
    assert code == 1
    assert err.strip() == "error: depends_on names no such task: 99"
    code, _, err = _run(capsys, db_url, "enqueue", "b", "--depends-on", "x")
    assert code == 2


def test_read_only_commands_create_no_database(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere" / "queue.db"
    for argv in (["schedules", "list"], ["types", "list"]):
        code, _, err = _run(capsys, sqlite_url_for(missing), *argv)
        assert code == 1
        assert "no database" in err
    assert not missing.parent.exists()
