"""The SQLite engine: PRAGMAs, BEGIN IMMEDIATE for writes and deferred reads, integer times,
the version check and the network-share warning. Plus the few engine facts of PostgreSQL."""

from __future__ import annotations

import contextlib
import sqlite3
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import IntegrityError

from queue_core import DatabaseUnavailable, SchemaMissing
from queue_core.clock import ManualClock
from queue_core.database import Database
from queue_core.dialects.sqlite import check_sqlite_version, network_filesystem_of
from queue_core.errors import UnsupportedDatabase
from queue_core.models import TIME_COLUMNS
from queue_core.repositories import (
    LeaseRepository,
    ScheduleRepository,
    TaskLogRepository,
    TaskRepository,
    TypeRepository,
    WorkerRepository,
)
from queue_core.schemas import TaskCreate
from queue_core.settings import (
    SQLITE_BUSY_TIMEOUT_MS,
    SQLITE_CACHE_SIZE_KIB,
    SQLITE_JOURNAL_SIZE_LIMIT_BYTES,
    SQLITE_MIN_VERSION,
    SQLITE_WAL_AUTOCHECKPOINT_PAGES,
    QueueSettings,
)

WAIT = 10.0  # generous bound on every cross-thread wait


def _sqlite_path(url: str) -> str:
    return url.removeprefix("sqlite:///")


def _with_busy_timeout(url: str, ms: int) -> Database:
    return Database(url, settings=QueueSettings(sqlite_busy_timeout_ms=ms))


# --- PRAGMAs ---


def test_pragmas_on_a_fresh_connection(sqlite_url: str) -> None:
    with Database(sqlite_url) as db, db.engine.connect() as conn:
        pragma = {
            name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in (
                "journal_mode",
                "synchronous",
                "foreign_keys",
                "busy_timeout",
                "temp_store",
                "cache_size",
                "wal_autocheckpoint",
                "journal_size_limit",
                "mmap_size",
            )
        }
    assert pragma == {
        "journal_mode": "wal",
        "synchronous": 1,  # NORMAL
        "foreign_keys": 1,
        "busy_timeout": SQLITE_BUSY_TIMEOUT_MS,
        "temp_store": 2,  # MEMORY
        "cache_size": -SQLITE_CACHE_SIZE_KIB,  # negative: KiB, not pages
        "wal_autocheckpoint": SQLITE_WAL_AUTOCHECKPOINT_PAGES,
        "journal_size_limit": SQLITE_JOURNAL_SIZE_LIMIT_BYTES,
        "mmap_size": 0,  # deliberately off (docs/configuration.md)
    }


def test_busy_timeout_follows_the_setting(sqlite_url: str) -> None:
    with _with_busy_timeout(sqlite_url, 1234) as db, db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 1234


def test_foreign_keys_are_enforced(sqlite_url: str) -> None:
    with Database(sqlite_url) as db:
        with pytest.raises(IntegrityError, match="FOREIGN KEY"), db.write() as conn:
            conn.execute(text("INSERT INTO task_logs (task_id, message) VALUES (999, 'orphan')"))
        task_id = TaskRepository(db).enqueue(type="t").task.task_id
        with db.write() as conn:
            conn.execute(text("DELETE FROM task_queue WHERE id = :id"), {"id": task_id})
        assert TaskLogRepository(db).for_task(task_id) == []  # ON DELETE CASCADE


# --- transactions: BEGIN IMMEDIATE for writes, deferred reads ---


def _statements(db: Database) -> list[str]:
    """What SQLite itself is asked to run on every connection of ``db`` opened from now on,
    whether through SQLAlchemy or the hot paths' DBAPI connection."""
    seen: list[str] = []

    def record(statement: str) -> None:
        words = statement.split()
        seen.append(" ".join(words[:2]))

    @event.listens_for(db.engine, "connect")
    def trace(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.set_trace_callback(record)

    return seen


def test_writes_begin_immediate_and_reads_begin_deferred(sqlite_url: str) -> None:
    with Database(sqlite_url) as db:
        seen = _statements(db)
        tasks = TaskRepository(db)
        task_id = tasks.enqueue(type="t").task.task_id
        assert seen[0] == "BEGIN IMMEDIATE"
        seen.clear()
        tasks.get(task_id)
        tasks.list()
        tasks.stats()
        assert [s for s in seen if s.startswith("BEGIN")] == ["BEGIN"] * 3
        assert not any(s.startswith(("INSERT", "UPDATE", "DELETE")) for s in seen)


def test_read_then_write_transactions_in_two_threads_never_get_busy(sqlite_url: str) -> None:
    """The case BEGIN IMMEDIATE exists for: two transactions that read, then write. Deferred,
    the second one to write fails with SQLITE_BUSY at once, whatever busy_timeout says."""
    db = Database(sqlite_url)
    both_read = threading.Barrier(2)
    errors: list[BaseException] = []

    def read_then_write(name: str) -> None:
        try:
            for _ in range(5):
                with db.write() as conn:
                    conn.execute(text("SELECT count(*) FROM task_queue")).scalar()
                    # Were BEGIN deferred, both would now hold a read snapshot.
                    with contextlib.suppress(threading.BrokenBarrierError):
                        both_read.wait(timeout=0.2)
                    conn.execute(text("INSERT INTO task_queue (type) VALUES (:t)"), {"t": name})
                both_read.reset()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=read_then_write, args=(n,)) for n in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=WAIT * 3)
    db.dispose()
    assert errors == []
    with Database(sqlite_url) as db, db.read() as conn:
        assert conn.execute(text("SELECT count(*) FROM task_queue")).scalar() == 10


def _hold_write_lock(path: str) -> sqlite3.Connection:
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO task_queue (type) VALUES ('held')")
    return holder


def test_reads_do_not_wait_for_a_held_write_lock(sqlite_url: str) -> None:
    with Database(sqlite_url) as db:
        TaskRepository(db).enqueue(type="t")
    holder = _hold_write_lock(_sqlite_path(sqlite_url))
    try:
        # busy_timeout 0: anything that needed the lock would fail at once.
        with _with_busy_timeout(sqlite_url, 0) as db:
            tasks = TaskRepository(db)
            assert [t.type for t in tasks.list()] == ["t"]  # the uncommitted row is unseen
            assert tasks.stats().total_tasks == 1
            with pytest.raises(DatabaseUnavailable, match="database is locked"):
                tasks.enqueue(type="t")
    finally:
        holder.rollback()
        holder.close()


def test_writes_wait_for_the_lock_within_busy_timeout(sqlite_url: str) -> None:
    holder = _hold_write_lock(_sqlite_path(sqlite_url))
    released = threading.Timer(0.3, holder.commit)
    released.start()
    try:
        with Database(sqlite_url) as db:  # busy_timeout 5 s
            task = TaskRepository(db).enqueue(type="after").task
            assert task.task_id == 2  # it waited for the holder's row to commit first
    finally:
        released.join(timeout=WAIT)
        holder.close()


# --- time is stored as integer microseconds ---


def _full_lifecycle(db: Database) -> None:
    clock = ManualClock()
    tasks, leases = TaskRepository(db, clock), LeaseRepository(db, clock)
    workers = WorkerRepository(db, clock)
    workers.register("w", capabilities={"k": "v"}, task_types=["t"])
    tasks.enqueue(type="t", max_attempts=3)
    tasks.enqueue(type="t", run_after_utc=clock() + timedelta(hours=1))
    tasks.enqueue_many([TaskCreate(type="t", payload={"i": i}) for i in range(3)])
    [first] = leases.claim("w", ["t"])
    leases.renew(first.lease, 30, log=True)
    leases.fail(first.lease, "retry me")  # back to queued with a back-off time
    clock.advance(3600)
    [again] = leases.claim("w", ["t"])
    leases.release(again.lease)
    [third] = leases.claim("w", ["t"])
    leases.complete(third.lease, {"ok": True})
    [fourth] = leases.claim("w", ["t"])
    leases.fail(fourth.lease, "dead", permanent=True)
    [fifth] = leases.claim("w", ["t"])
    tasks.cancel(fifth.task_id)
    leases.mark_cancelled(fifth.lease)
    [sixth] = leases.claim("w", ["t"], lease_seconds=1)
    clock.advance(5)
    leases.recover_expired()
    tasks.retry(fourth.task_id)
    tasks.cancel(sixth.task_id)
    TaskLogRepository(db, clock).add(sixth.task_id, "a note", level="DEBUG", extra=1)
    workers.heartbeat("w")
    workers.stop("w")
    # Flow control's tables: a schedule that ran, a rate-limited type and one of its claims.
    schedules = ScheduleRepository(db, clock)
    schedules.add(name="s", type="t.s", cron="* * * * *")
    clock.advance(120)
    schedules.enqueue_due()
    TypeRepository(db, clock).set_limits("t.r", rate={"count": 5, "per_seconds": 60})
    tasks.enqueue(type="t.r")
    leases.claim("w", ["t.r"])
    with db.write() as conn:
        conn.execute(text("INSERT INTO task_queue (type) VALUES ('raw')"))
        conn.execute(text("INSERT INTO workers (worker_id) VALUES ('raw')"))


def test_every_time_written_is_an_integer_and_text_is_refused(sqlite_url: str) -> None:
    with Database(sqlite_url) as db:
        _full_lifecycle(db)
        with db.read() as conn:
            for table, columns in TIME_COLUMNS.items():
                for column in columns:
                    kinds = set(
                        conn.execute(text(f"SELECT DISTINCT typeof({column}) FROM {table}"))
                        .scalars()
                        .all()
                    )
                    assert kinds <= {"integer", "null"}, f"{table}.{column} holds {kinds}"
                    declared = conn.execute(
                        text(f"SELECT type FROM pragma_table_info('{table}') WHERE name = :c"),
                        {"c": column},
                    ).scalar()
                    assert declared in ("BIGINT", "INTEGER")
        for table, columns in TIME_COLUMNS.items():
            for column in columns:
                for value in ("2030-01-01 00:00:00", "2030-01-01T00:00:00+00:00", 1.5):
                    with pytest.raises(IntegrityError, match="CHECK"), db.write() as conn:
                        conn.execute(text(f"UPDATE {table} SET {column} = :v"), {"v": value})


def test_postgresql_times_are_timestamptz(db: Database, backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("about PostgreSQL")
    with db.read() as conn:
        for table, columns in TIME_COLUMNS.items():
            for column in columns:
                data_type = conn.execute(
                    text(
                        "SELECT data_type FROM information_schema.columns "
                        "WHERE table_schema = current_schema() AND table_name = :t "
                        "AND column_name = :c"
                    ),
                    {"t": table, "c": column},
                ).scalar()
                assert data_type == "timestamp with time zone", f"{table}.{column}"


# --- errors the engine translates ---


def test_missing_schema_is_reported_as_such(blank_db_url: str) -> None:
    with Database(blank_db_url) as db:
        tasks = TaskRepository(db)
        for call in (lambda: tasks.get(1), lambda: tasks.enqueue(type="t"), tasks.stats):
            with pytest.raises(SchemaMissing, match="run `prismq-queue db upgrade` first"):
                call()


def test_unreachable_postgresql_is_unavailable() -> None:
    # Port 1 on the loopback address: nothing listens, the connection is refused at once.
    url = "postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=3"
    with Database(url) as db, pytest.raises(DatabaseUnavailable, match="database unavailable"):
        TaskRepository(db).get(1)


# --- the SQLite build and where the file lives ---


def test_old_sqlite_is_refused() -> None:
    with pytest.raises(UnsupportedDatabase, match=r"SQLite 3\.30\.0 is too old.*3\.35\.0"):
        check_sqlite_version((3, 30, 0))
    check_sqlite_version(SQLITE_MIN_VERSION)
    check_sqlite_version()  # the SQLite this Python has
    assert sqlite3.sqlite_version_info >= SQLITE_MIN_VERSION


MOUNTS = r"""sysfs /sys sysfs rw,nosuid 0 0
/dev/sda1 / ext4 rw,relatime 0 0
server:/export /mnt/nfs nfs4 rw,vers=4.2 0 0
//nas/share /mnt/my\040share cifs rw 0 0
tmpfs /mnt/nfs/scratch tmpfs rw 0 0
C:\134 /mnt/c drvfs rw,noatime 0 0
malformed-line
"""


@pytest.mark.skipif(sys.platform == "win32", reason="/proc/mounts is Linux")
@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/home/user/queue.db", None),
        ("/mnt/nfs/queue.db", "nfs4"),
        ("/mnt/nfs", "nfs4"),
        ("/mnt/nfsdata/queue.db", None),  # a prefix of the name is not a parent directory
        ("/mnt/nfs/scratch/queue.db", None),  # the deepest mount point wins
        ("/mnt/my share/q/queue.db", "cifs"),  # \040 in /proc/mounts is a space
        ("/mnt/c/Users/me/queue.db", "drvfs"),  # a Windows drive inside WSL
    ],
)
def test_network_filesystem_detection(path: str, expected: str | None) -> None:
    assert network_filesystem_of(Path(path), MOUNTS) == expected


@pytest.mark.skipif(sys.platform == "win32", reason="/proc/mounts is Linux")
def test_network_filesystem_detection_on_this_machine(tmp_path: Path) -> None:
    assert network_filesystem_of(tmp_path) is None  # pytest's temporary directory is local
    assert network_filesystem_of(tmp_path, "") is None


@pytest.mark.skipif(sys.platform != "win32", reason="UNC paths are Windows")
def test_unc_paths_are_network_shares() -> None:
    assert network_filesystem_of(Path(r"\\server\share\queue.db")) == "smb"
    assert network_filesystem_of(Path(r"C:\Data\queue.db")) is None


def test_connections_from_many_threads_share_one_engine(sqlite_url: str) -> None:
    db = Database(sqlite_url)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            tasks = TaskRepository(db)
            for i in range(10):
                tasks.get(tasks.enqueue(type=f"t{n}", payload={"i": i}).task.task_id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=max(1.0, WAIT * 3 - (time.monotonic() - started)))
    try:
        assert errors == []
        assert TaskRepository(db).stats().total_tasks == 40
    finally:
        db.dispose()
