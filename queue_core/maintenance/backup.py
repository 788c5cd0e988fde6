"""Online backup and restore of the SQLite database (PostgreSQL: pg_dump, see operations.md).

The backup copies pages with SQLite's backup API while the queue keeps running. SQLite restarts
a page-by-page backup from the first page whenever another connection writes to the source
between two steps, so under steady load a stepped backup may never finish. Holding one read
transaction on the source for the whole copy fixes that: every step reads the same snapshot,
and in WAL mode a reader never blocks writers (they keep appending to the WAL; checkpoints
cannot pass the snapshot until the backup ends, so the WAL grows by what is written meanwhile).
The copy is checked with ``PRAGMA integrity_check`` before it replaces DEST.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from queue_core.database import Database
from queue_core.maintenance._common import (
    MaintenanceFailed,
    Progress,
    database_file,
    file_size,
    raw_sqlite,
)
from queue_core.maintenance.checkpoint import CheckpointMode, checkpoint
from queue_core.settings import BACKUP_PAGES_PER_STEP

POSTGRESQL_BACKUP_MESSAGE = (
    "backup copies SQLite files only; back PostgreSQL up with "
    "`pg_dump --format=custom --file=queue.dump DBNAME` and restore with pg_restore "
    "(see docs/operations.md, 'Backup and restore on PostgreSQL')"
)


@dataclass(frozen=True)
class BackupReport:
    path: Path
    pages: int
    page_size: int
    bytes: int
    tasks: int
    """Rows of task_queue in the copy: the snapshot the backup took."""
    integrity: str
    seconds: float

    def summary(self) -> str:
        return (
            f"backup {self.path}: {self.pages} pages of {self.page_size} bytes, "
            f"{self.bytes} bytes, {self.tasks} tasks, integrity_check {self.integrity}, "
            f"{self.seconds:.1f}s"
        )


@dataclass(frozen=True)
class RestoreReport:
    source: Path
    target: Path
    pages: int
    bytes: int
    tasks: int
    integrity: str

    def summary(self) -> str:
        return (
            f"restored {self.source} into {self.target}: {self.pages} pages, {self.bytes} bytes, "
            f"{self.tasks} tasks, integrity_check {self.integrity}"
        )


def integrity_check(conn: sqlite3.Connection) -> str:
    """``ok``, or SQLite's first complaints joined on one line."""
    rows = [str(row[0]) for row in conn.execute("PRAGMA integrity_check(20)")]
    return "ok" if rows == ["ok"] else "; ".join(rows)


def backup(
    db: Database,
    dest: Path,
    *,
    overwrite: bool = False,
    pages_per_step: int = BACKUP_PAGES_PER_STEP,
    progress: Progress | None = None,
    on_total: Progress | None = None,
) -> BackupReport:
    """Copy the live database to ``dest`` and verify the copy.

    ``on_total`` gets the page count once it is known, ``progress`` the pages copied per step.
    The copy is written next to ``dest`` and renamed into place only once integrity_check
    says ``ok``, so a failed backup never leaves a half-written file under the final name.
    """
    source = database_file(db, POSTGRESQL_BACKUP_MESSAGE).resolve()
    dest = Path(dest).expanduser().resolve()
    if dest == source:
        raise MaintenanceFailed(f"the backup destination {dest} is the live database")
    if dest.exists() and not overwrite:
        raise MaintenanceFailed(f"{dest} already exists; pass --overwrite to replace it")
    if not dest.parent.is_dir():
        # A backup creates one file, never a directory: a typo must not plant a tree.
        raise MaintenanceFailed(f"the directory {dest.parent} does not exist; create it first")
    partial = dest.with_name(dest.name + ".partial")
    _remove_database_files(partial)
    started = time.monotonic()
    copied = 0
    total_reported = False

    def step(_status: int, remaining: int, total: int) -> None:
        nonlocal copied, total_reported
        if on_total is not None and not total_reported:
            on_total(total)
            total_reported = True
        done = total - remaining
        if progress is not None and done > copied:
            progress(done - copied)
        copied = done

    try:
        with raw_sqlite(db) as conn:
            # The read transaction pins one snapshot for every step (see the module docstring).
            conn.execute("BEGIN")
            try:
                conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
                target = sqlite3.connect(partial)
                try:
                    conn.backup(target, pages=max(1, pages_per_step), progress=step)
                finally:
                    target.close()
            finally:
                conn.execute("ROLLBACK")
        report = _verify_copy(partial, dest)
    except BaseException:
        _remove_database_files(partial)
        raise
    if dest.exists():
        _remove_database_files(dest)
    os.replace(partial, dest)
    return BackupReport(
        path=dest,
        pages=report.pages,
        page_size=report.page_size,
        bytes=file_size(dest),
        tasks=report.tasks,
        integrity=report.integrity,
        seconds=time.monotonic() - started,
    )


@dataclass(frozen=True)
class _Verified:
    pages: int
    page_size: int
    tasks: int
    integrity: str


def _verify_copy(partial: Path, dest: Path) -> _Verified:
    """Check the fresh copy and make it a self-contained file (rollback journal, no -wal)."""
    conn = sqlite3.connect(partial, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=DELETE")
        verified = _inspect(conn)
    finally:
        conn.close()
    if verified.integrity != "ok":
        raise MaintenanceFailed(
            f"the backup failed its integrity check ({verified.integrity}); {dest} is unchanged"
        )
    return verified


def _inspect(conn: sqlite3.Connection) -> _Verified:
    integrity = integrity_check(conn)
    pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
    page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
    try:
        tasks = int(conn.execute("SELECT COUNT(*) FROM task_queue").fetchone()[0])
    except sqlite3.OperationalError as exc:
        raise MaintenanceFailed(f"not a queue database: {exc}") from exc
    return _Verified(pages, page_size, tasks, integrity)


def restore(db: Database, source: Path) -> RestoreReport:
    """Copy a backup over the database ``db`` names, through the backup API.

    Going through SQLite (rather than copying the file into place) keeps the target's WAL and
    shared-memory files consistent: a stale ``-wal`` next to a copied-in file would be replayed
    over it. Stop every worker and API process first; they would otherwise keep working from
    the state before the restore. The backup is checked before and the result after. The
    copy is one step: the target is locked for its whole length anyway.
    """
    target_path = database_file(db, POSTGRESQL_BACKUP_MESSAGE).resolve()
    source = Path(source).expanduser().resolve()
    if not source.is_file():
        raise MaintenanceFailed(f"no backup at {source}")
    if target_path == source:
        raise MaintenanceFailed(f"{source} is the database to restore into")
    backup_conn = sqlite3.connect(f"{source.as_uri()}?mode=ro", uri=True)
    try:
        checked = _inspect(backup_conn)
        if checked.integrity != "ok":
            raise MaintenanceFailed(f"the backup {source} is damaged: {checked.integrity}")
        with raw_sqlite(db) as conn:
            backup_conn.backup(conn, pages=-1)
    finally:
        backup_conn.close()
    checkpoint(db, CheckpointMode.TRUNCATE)
    with raw_sqlite(db) as conn:
        result = _inspect(conn)
    if result.integrity != "ok":
        raise MaintenanceFailed(f"the restored database failed integrity_check: {result.integrity}")
    return RestoreReport(
        source=source,
        target=target_path,
        pages=result.pages,
        bytes=file_size(target_path),
        tasks=result.tasks,
        integrity=result.integrity,
    )


def _remove_database_files(path: Path) -> None:
    for candidate in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(FileNotFoundError):
            candidate.unlink()
