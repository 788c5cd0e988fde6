"""Online backup while 4 processes write, and the documented restore procedures."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

from queue_core import migrate
from queue_core.cli import main
from queue_core.database import Database
from queue_core.maintenance import MaintenanceFailed, backup
from queue_core.repositories import LeaseRepository, TaskRepository, WorkerRepository
from queue_core.repositories._common import TASKS
from queue_core.schemas import TaskCreate
from queue_core.settings import sqlite_url_for
from tests.queue_core.maintenance._procs import write_tasks

WRITERS = 4
TIMEOUT = 60


def _task_ids(conn: sqlite3.Connection) -> set[int]:
    return {row[0] for row in conn.execute("SELECT id FROM task_queue")}


def _count(db: Database) -> int:
    with db.read() as conn:
        return int(conn.execute(select(func.count()).select_from(TASKS)).scalar_one())


@pytest.mark.slow
def test_backup_while_four_processes_write(sqlite_url: str, tmp_path: Path) -> None:
    db = Database(sqlite_url)
    tasks = TaskRepository(db)
    for _ in range(8):  # a few MB, so the copy takes many steps
        tasks.enqueue_many(
            [TaskCreate(type="seed", payload={"pad": "y" * 400}) for _ in range(500)]
        )

    ctx = multiprocessing.get_context("spawn")
    stop, ready, results = ctx.Event(), ctx.Queue(), ctx.Queue()
    writers = [
        ctx.Process(target=write_tasks, args=(sqlite_url, i, stop, ready, results))
        for i in range(WRITERS)
    ]
    for proc in writers:
        proc.start()
    try:
        for _ in range(WRITERS):
            ready.get(timeout=TIMEOUT)
        deadline = time.monotonic() + TIMEOUT
        while _count(db) < 4000 + 200 and time.monotonic() < deadline:
            time.sleep(0.05)

        with db.read() as conn:
            committed_before = set(conn.execute(select(TASKS.c.id)).scalars())
        live_counts: list[int] = []

        def slow_progress(_pages: int) -> None:
            live_counts.append(_count(db))
            time.sleep(0.005)

        dest = tmp_path / "backups" / "queue-backup.db"
        dest.parent.mkdir()  # a backup never creates a directory (issue 12 item 12)
        report = backup(db, dest, pages_per_step=16, progress=slow_progress)
    finally:
        stop.set()
        outcomes = [results.get(timeout=TIMEOUT) for _ in writers]
        for proc in writers:
            proc.join(timeout=TIMEOUT)
    assert all(proc.exitcode == 0 for proc in writers)
    assert sum(committed for _, committed, _ in outcomes) > 0
    assert len(live_counts) > 10
    assert live_counts[-1] > live_counts[0], "the writers should have committed during the copy"

    assert report.integrity == "ok"
    assert report.pages * report.page_size == report.bytes == dest.stat().st_size
    assert not dest.with_name(dest.name + ".partial").exists()
    copy = sqlite3.connect(dest)
    try:
        assert copy.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        in_backup = _task_ids(copy)
        assert committed_before <= in_backup
        assert len(in_backup) == report.tasks
        # One snapshot: every task of the copy has the log row its enqueue wrote with it.
        orphans = copy.execute(
            "SELECT COUNT(*) FROM task_queue t WHERE NOT EXISTS "
            "(SELECT 1 FROM task_logs l WHERE l.task_id = t.id AND l.message = 'enqueued')"
        ).fetchone()[0]
        assert orphans == 0
    finally:
        copy.close()
    assert _count(db) > len(in_backup)  # the live database went on

    # Restore procedure 1: into a new file (a new machine, or a side-by-side check).
    restored_url = sqlite_url_for(tmp_path / "restored" / "queue.db")
    assert main(["maintenance", "restore", str(dest), "--database-url", restored_url]) == 0
    _assert_restored(restored_url, in_backup)

    # Restore procedure 2: over the live database, once its writers are stopped.
    db.dispose()
    assert main(["maintenance", "restore", str(dest), "--database-url", sqlite_url]) == 0
    _assert_restored(sqlite_url, in_backup)


def _assert_restored(url: str, expected_ids: set[int]) -> None:
    db = Database(url)
    try:
        with db.read() as conn:
            ids = set(conn.execute(select(TASKS.c.id)).scalars())
            assert conn.execute(text("PRAGMA integrity_check")).scalar_one() == "ok"
        assert ids == expected_ids
        tasks = TaskRepository(db)
        task_id = tasks.enqueue(type="after-restore").task.task_id
        assert task_id > max(expected_ids)
        leases = LeaseRepository(db)
        [claimed] = leases.claim("w-restored", ["after-restore"])
        leases.complete(claimed.lease, {"ok": True})
        assert tasks.get(task_id).status.value == "completed"
    finally:
        db.dispose()


def test_backup_refuses_to_overwrite_or_copy_onto_itself(sqlite_url: str, tmp_path: Path) -> None:
    db = Database(sqlite_url)
    try:
        TaskRepository(db).enqueue(type="t")
        dest = tmp_path / "b.db"
        backup(db, dest)
        with pytest.raises(MaintenanceFailed, match="already exists"):
            backup(db, dest)
        assert backup(db, dest, overwrite=True).tasks == 1
        live = Path(make_url(sqlite_url).database or "")
        with pytest.raises(MaintenanceFailed, match="live database"):
            backup(db, live)
    finally:
        db.dispose()


def test_restore_refuses_active_workers_and_damaged_backups(
    sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = Database(sqlite_url)
    try:
        TaskRepository(db).enqueue(type="t")
        dest = tmp_path / "b.db"
        backup(db, dest)
        WorkerRepository(db).register("still-running")
        assert main(["maintenance", "restore", str(dest), "--database-url", sqlite_url]) == 1
        assert "still-running" in capsys.readouterr().err

        damaged = tmp_path / "damaged.db"
        damaged.write_bytes(b"not a database at all" * 100)
        assert main(["maintenance", "restore", str(damaged), "--database-url", sqlite_url]) == 1
        assert capsys.readouterr().err.startswith("error: ")
        args = ["maintenance", "restore", str(dest), "--force", "--database-url", sqlite_url]
        assert main(args) == 0
    finally:
        db.dispose()


def test_backup_on_postgresql_explains_pg_dump(
    db_url: str, backend: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if backend != "postgresql":
        pytest.skip("PostgreSQL only")
    dest = tmp_path / "x.db"
    assert main(["maintenance", "backup", str(dest), "--database-url", db_url]) == 1
    err = capsys.readouterr().err
    assert "pg_dump" in err
    assert err.count("\n") == 1
    assert not dest.exists()


@pytest.mark.skipif(shutil.which("pg_dump") is None, reason="needs pg_dump and pg_restore")
def test_documented_pg_dump_procedure(blank_db_url: str, backend: str, tmp_path: Path) -> None:
    """docs/operations.md: pg_dump the queue's schema; after losing it, pg_restore it."""
    if backend != "postgresql":
        pytest.skip("PostgreSQL only")
    db = Database(blank_db_url)
    migrate.upgrade(db)
    TaskRepository(db).enqueue_many([TaskCreate(type="pg", payload={"n": n}) for n in range(50)])
    db.dispose()
    url = make_url(blank_db_url)
    schema = str(url.query["options"]).split("search_path=")[1]
    conn_args = ["-h", url.host or "127.0.0.1", "-p", str(url.port or 5432)]
    conn_args += ["-U", url.username or "postgres", "--dbname", url.database or ""]
    env = {**os.environ, "PGPASSWORD": url.password or ""}
    dump = tmp_path / "queue.dump"
    run = {"check": True, "env": env, "capture_output": True, "timeout": TIMEOUT}
    subprocess.run(
        ["pg_dump", *conn_args, "--format=custom", f"--schema={schema}", f"--file={dump}"],
        **run,  # type: ignore[call-overload]
    )
    admin = Database(blank_db_url)
    with admin.write() as conn:
        conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))  # the disaster
    admin.dispose()
    subprocess.run(["pg_restore", *conn_args, "--no-owner", str(dump)], **run)  # type: ignore[call-overload]
    restored = Database(blank_db_url)
    try:
        assert TaskRepository(restored).stats().queued_tasks == 50
        with restored.read() as conn:
            assert conn.execute(text("SELECT due_tasks FROM v_queue_oldest_due")).scalar_one() == 50
        assert migrate.current_revision(restored) == migrate.head_revision()
    finally:
        restored.dispose()
