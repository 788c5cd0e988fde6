"""checkpoint, vacuum, analyze and status, as functions and as `prismq-queue maintenance`."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from queue_core.cli import main
from queue_core.cli.maintenance import _ProgressBar
from queue_core.database import Database
from queue_core.maintenance import (
    CheckpointMode,
    NotSupportedOnBackend,
    analyze,
    checkpoint,
    optimize,
    purge,
    vacuum,
)
from queue_core.maintenance._common import FileSizes
from queue_core.repositories import LeaseRepository, TaskRepository
from queue_core.schemas import TaskCreate
from queue_core.settings import QueueSettings


def _fill(db: Database, count: int = 2000) -> None:
    tasks = TaskRepository(db)
    leases = LeaseRepository(db)
    for _ in range(count // 500):
        tasks.enqueue_many([TaskCreate(type="t", payload={"pad": "z" * 300}) for _ in range(500)])
    while claimed := leases.claim("w", ["t"], limit=500):
        leases.complete_many([(c.lease, None) for c in claimed])


def test_checkpoint_modes_report_frames(sqlite_url: str) -> None:
    db = Database(sqlite_url)
    try:
        _fill(db, 1000)
        passive = checkpoint(db, "passive")
        assert passive.mode is CheckpointMode.PASSIVE
        assert not passive.busy
        assert passive.log_frames >= passive.checkpointed_frames >= 0
        assert passive.wal_bytes_before > 0
        truncated = checkpoint(db, CheckpointMode.TRUNCATE)
        assert (truncated.busy, truncated.log_frames, truncated.wal_bytes_after) == (False, 0, 0)
        assert "busy=0" in truncated.summary()
    finally:
        db.dispose()


def test_checkpoint_reports_busy_behind_an_open_reader(sqlite_url: str) -> None:
    db = Database(sqlite_url, QueueSettings(sqlite_busy_timeout_ms=50))
    path = Path(make_url(sqlite_url).database or "")
    reader = sqlite3.connect(path, isolation_level=None)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT COUNT(*) FROM task_queue").fetchone()  # pins a snapshot
        _fill(db, 500)
        report = checkpoint(db, "truncate")
        assert report.busy
        assert report.log_frames > report.checkpointed_frames
        assert report.wal_bytes_after > 0
    finally:
        reader.close()
        db.dispose()


def test_vacuum_gives_space_back_after_purge(sqlite_url: str) -> None:
    db = Database(sqlite_url)
    try:
        _fill(db, 2000)
        assert purge(db, 0).tasks_deleted == 2000
        report = vacuum(db)
        assert report.bytes_after < report.bytes_before / 2
        assert FileSizes.of(db).wal_bytes == 0
        assert "reclaimed" in report.summary()
        assert analyze(db).startswith("analyze")
        assert "PRAGMA optimize" in optimize(db)
    finally:
        db.dispose()


def test_postgresql_vacuum_analyze_and_checkpoint(db: Database, backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("PostgreSQL only")
    _fill(db, 500)
    purge(db, 0)
    report = vacuum(db)
    assert report.bytes_before > 0
    assert report.bytes_after > 0
    assert analyze(db) == "analyze: ANALYZE done"
    assert "nothing to do" in optimize(db)
    with pytest.raises(NotSupportedOnBackend, match="PostgreSQL checkpoints"):
        checkpoint(db)


def test_maintenance_commands(
    db_url: str, backend: str, capsys: pytest.CaptureFixture[str]
) -> None:
    database = ["--database-url", db_url]
    db = Database(db_url)
    try:
        _fill(db, 500)
    finally:
        db.dispose()
    assert main(["maintenance", "checkpoint", "--mode", "truncate", *database]) == 0
    out = capsys.readouterr().out
    if backend == "sqlite":
        assert out.startswith("checkpoint truncate: busy=0")
    else:
        assert "PostgreSQL checkpoints its own WAL" in out
    assert main(["maintenance", "checkpoint", "--mode", "sideways", *database]) == 2
    capsys.readouterr()
    for command, expected in (
        ("vacuum", "vacuum:"),
        ("analyze", "analyze:"),
        ("sweep", "recovered 0 task(s)"),
        ("status", "no scheduled maintenance has run yet"),
    ):
        assert main(["maintenance", command, *database]) == 0
        assert expected in capsys.readouterr().out


def test_missing_schema_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{(tmp_path / 'nothing.db').as_posix()}"
    assert main(["maintenance", "purge", "--older-than", "7", "--database-url", url]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert "db upgrade" in err


def test_progress_bar_draws_only_on_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    quiet = _ProgressBar("purging")
    quiet.set_total(10)
    quiet.update(5)
    quiet.close()
    assert capsys.readouterr().err == ""
    drawn = _ProgressBar("purging")
    drawn.enabled = True
    drawn.set_total(10)
    drawn.update(10)
    drawn.close()
    assert "purging" in capsys.readouterr().err
