"""A full disk (issue 12 item 7) and a read-only database (item 8), for real.

The full disk is a small tmpfs this test mounts in a temporary directory and unmounts at the
end (root only; skipped with the reason elsewhere). The database lives there; a filler file
takes the rest of the space, and deleting it is "space comes back".
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from queue_core.database import Database
from queue_core.dialects import DISK_FULL, dialect_for
from queue_core.errors import DatabaseUnavailable
from queue_core.repositories import TaskRepository
from queue_core.settings import sqlite_url_for

REPO_ROOT = Path(__file__).resolve().parents[2]
MOUNT_SIZE = "4m"
TIMEOUT = 120


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRISMQ_QUEUE_")}
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def _cli(*args: str, url: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "queue_core.cli", *args, "--database-url", url],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=REPO_ROOT,
        timeout=timeout,
    )


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a real full disk needs root to mount a small tmpfs")
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={MOUNT_SIZE},mode=0755", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False, capture_output=True)


def _fill(disk: Path) -> Path:
    """Takes every free byte of ``disk``; deleting the returned file frees them."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for size in (1 << 20, 65536, 4096, 512, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler


def test_sqlite_full_disk_is_database_unavailable() -> None:
    error = sqlite3.OperationalError("database or disk is full")
    dialect = dialect_for("sqlite://")
    assert dialect.is_unavailable(error)
    assert dialect.unavailable_reason(error) == DISK_FULL


def test_postgresql_disk_full_is_database_unavailable() -> None:
    psycopg = pytest.importorskip("psycopg")
    error = psycopg.errors.DiskFull("could not extend file: No space left on device")
    assert error.sqlstate == "53100"
    dialect = dialect_for("postgresql+psycopg://u@h/d")
    assert dialect.is_unavailable(error)
    assert dialect.unavailable_reason(error) == DISK_FULL


def test_full_disk_one_line_throttled_worker_nothing_lost(
    small_disk: Path, sqlite_template: Path
) -> None:
    db_path = small_disk / "queue.db"
    shutil.copyfile(sqlite_template, db_path)
    url = sqlite_url_for(db_path)
    with Database(url) as db:
        tasks = TaskRepository(db)
        ids = [tasks.enqueue(type="demo.echo", payload={"n": n}).task.task_id for n in range(20)]
    filler = _fill(small_disk)

    # enqueue: one line, no traceback.
    payload_file = small_disk.parent / "payload.json"
    payload_file.write_text('{"blob": "' + "x" * 200_000 + '"}')
    result = _cli("enqueue", "demo.echo", "--payload", f"@{payload_file}", url=url)
    assert result.returncode == 1, result
    assert result.stderr.strip() == "error: database unavailable: disk full", result.stderr

    # In-process too: the repository raises DatabaseUnavailable saying so.
    with Database(url) as db, pytest.raises(DatabaseUnavailable, match="disk full"):
        TaskRepository(db).enqueue(type="demo.echo", payload={"blob": "y" * 200_000})

    # A burst worker: throttled warnings while the disk is full, no traceback, no crash.
    log = small_disk.parent / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "queue_core.cli",
                "worker",
                "--import",
                "workers.demo",
                "--burst",
                "--database-url",
                url,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=_env(),
            cwd=REPO_ROOT,
        )
        try:
            time.sleep(6.0)
            assert worker.poll() is None, log.read_text()
            text = log.read_text(errors="replace")
            assert "Traceback" not in text, text
            assert "ERROR" not in text, text
            warnings = [line for line in text.splitlines() if "WARNING" in line]
            assert len(warnings) <= 8, text  # throttled: not one per poll
            filler.unlink()  # space comes back
            code = worker.wait(TIMEOUT)
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    text = log.read_text(errors="replace")
    assert code == 0, text
    assert "Traceback" not in text, text

    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        statuses = dict(conn.execute("SELECT id, status FROM task_queue").fetchall())
    finally:
        conn.close()
    assert all(statuses[i] == "completed" for i in ids), statuses


def test_read_only_database_is_one_line(tmp_path: Path, sqlite_template: Path) -> None:
    """Issue 12 item 8: a database file (or its directory) that cannot be written."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # root writes through file modes: open the database read-only through the URL.
        target = tmp_path / "queue.db"
        shutil.copyfile(sqlite_template, target)
        url = f"sqlite:///file:{target}?mode=ro&uri=true"
    else:
        directory = tmp_path / "ro"
        directory.mkdir()
        target = directory / "queue.db"
        shutil.copyfile(sqlite_template, target)
        target.chmod(0o444)
        directory.chmod(0o555)
        url = sqlite_url_for(target)
    result = _cli("enqueue", "demo.echo", url=url)
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines
    assert "read" in lines[0].lower(), lines  # "readonly database" / "read-only"
    assert "Traceback" not in result.stderr
