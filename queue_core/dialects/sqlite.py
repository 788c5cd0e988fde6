"""SQLite: one file in WAL mode, every write transaction started with BEGIN IMMEDIATE.

The dialect's SQL is in :mod:`queue_core.dialects.sqlite_sql`; the hot path keeps one DBAPI
connection per engine (:class:`queue_core.dialects.connections.KeptConnection`).
"""

from __future__ import annotations

import logging
import random
import re
import shutil
import sqlite3
import sys
import threading
import time
import weakref
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, event
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from queue_core.dialects import (
    DISK_FULL,
    JOB_CHECKPOINT,
    JOB_OPTIMIZE,
    READ_ONLY_OPTION,
    GuardedResult,
    GuardedRow,
    LogRow,
    first_line,
)
from queue_core.dialects import sqlite_sql as sql_module
from queue_core.dialects.claiming import TaskClaimer, create_claimer
from queue_core.dialects.connections import RawWriter, kept_for
from queue_core.dialects.finished import FinishedWaiters
from queue_core.dialects.guarded import GuardedStatements
from queue_core.errors import DatabaseUnavailable, NotSupportedOnBackend, UnsupportedDatabase
from queue_core.settings import (
    SQLITE_CACHE_SIZE_KIB,
    SQLITE_JOURNAL_SIZE_LIMIT_BYTES,
    SQLITE_MIN_VERSION,
    SQLITE_WAL_AUTOCHECKPOINT_PAGES,
    QueueSettings,
)
from queue_core.states import SchedulingStrategy

SQLITE_FULL = 13  # the primary result code; sqlite3.SQLITE_FULL needs Python 3.11
# Less free space than this where the database lives, and a disk I/O error is a full disk.
DISK_FULL_FREE_BYTES = 1 << 20

log = logging.getLogger("prismq.queue.sqlite")

# drvfs and 9p are how WSL mounts Windows drives; the rest are network or cluster file systems.
NETWORK_FILESYSTEMS = frozenset(
    {"nfs", "nfs4", "cifs", "smbfs", "smb3", "9p", "drvfs", "fuse.sshfs", "afs", "ceph"}
    | {"glusterfs", "fuse.glusterfs", "lustre", "gpfs"}
)

# An idle worker checks PRAGMA data_version at this pace for a while after the last activity,
# then relaxes to its poll interval: fast wake-ups when work flows, little CPU when it does not.
DATA_VERSION_FAST_INTERVAL = 0.001
DATA_VERSION_FAST_WINDOW = 2.0


def json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def check_sqlite_version(version: tuple[int, int, int] = sqlite3.sqlite_version_info) -> None:
    if version < SQLITE_MIN_VERSION:
        needed = ".".join(map(str, SQLITE_MIN_VERSION))
        found = ".".join(map(str, version))
        raise UnsupportedDatabase(
            f"SQLite {found} is too old: prismq-queue needs {needed} or newer "
            "(UPDATE ... RETURNING); upgrade Python or use PostgreSQL"
        )


def network_filesystem_of(path: Path, mounts: str | None = None) -> str | None:
    """The network file system type holding ``path``, or None when it is local or unknown.

    ``mounts`` is the text of ``/proc/mounts`` (read when not given); elsewhere than Linux
    only UNC paths on Windows are recognised.
    """
    text_path = str(path)
    if sys.platform == "win32":
        return "smb" if text_path.startswith(("\\\\", "//")) else None
    if mounts is None:
        try:
            mounts = Path("/proc/mounts").read_text()
        except OSError:
            return None
    best, best_type = "", None
    resolved = path.resolve().as_posix()
    for line in mounts.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        mount_point, fs_type = _unescape_mount_field(parts[1]), parts[2]
        inside = resolved == mount_point or resolved.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) > len(best):
            best, best_type = mount_point, fs_type
    return best_type if best_type in NETWORK_FILESYSTEMS else None


def _unescape_mount_field(field: str) -> str:
    """/proc/mounts writes space, tab, newline and backslash in paths as octal escapes."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


class SqliteDialect:
    name = "sqlite"
    sql = sql_module

    def __init__(self) -> None:
        # Wakes workers of this process at once when this process enqueues.
        self._local_wakeups: weakref.WeakSet[_DataVersionWaiter] = weakref.WeakSet()
        self._enqueue_sql = sql_module.dbapi_sql(sql_module.ENQUEUE_SQL)
        self._guarded = GuardedStatements(sql_module)
        self._key_taken_sql = sql_module.dbapi_sql(sql_module.KEY_TAKEN_SQL)

    def create_engine(self, url: str, settings: QueueSettings) -> Engine:
        check_sqlite_version()
        path = _file_of(url)
        self._database_path = path
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            fs_type = network_filesystem_of(path.parent)
            if fs_type:
                log.warning(
                    "the queue database %s is on a network file system (%s): SQLite's WAL "
                    "mode needs shared memory on a local disk and can corrupt or lock "
                    "there; move it to a local disk or use PostgreSQL",
                    path,
                    fs_type,
                )
        busy_ms = settings.sqlite_busy_timeout_ms
        engine = sa_create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": busy_ms / 1000},
            json_serializer=json_dumps,
            json_deserializer=orjson.loads,
        )
        _install_pragmas(engine, busy_ms)
        return engine

    def raw_writer(self, engine: Engine) -> RawWriter:
        # One kept connection per engine: writes are serialised by SQLite anyway (connections.py).
        return RawWriter(engine, self, kept=kept_for(engine))

    def claimer(self, strategy: SchedulingStrategy, rng: random.Random | None) -> TaskClaimer:
        return create_claimer(sql_module, strategy, rng)

    def set_state_if_leased_many(
        self,
        cursor: Any,
        kind: str,
        rows: Sequence[GuardedRow],
        now: datetime,
        lease_until: datetime | None = None,
    ) -> list[GuardedResult]:
        return self._guarded.set_state_if_leased_many(cursor, kind, rows, now, lease_until)

    def insert_logs(self, cursor: Any, rows: Sequence[LogRow]) -> None:
        self._guarded.insert_logs(cursor, rows)

    def enqueue_logged(
        self,
        writer: RawWriter,
        params: dict[str, Any],
        log: LogRow | None,
        notify: bool,
    ) -> int | None:
        # No data-modifying CTEs in SQLite, and its transactions cost no round trips: the row
        # and its log row are two statements of one BEGIN IMMEDIATE transaction.
        with writer.transaction() as cursor:
            # An INSERT that meets the key still spends an AUTOINCREMENT id; looking first keeps
            # ids consecutive across replays (nothing can take the key meanwhile: the write lock
            # is held).
            if params["idempotency_key"] is not None:
                cursor.execute(self._key_taken_sql, {"key": params["idempotency_key"]})
                if cursor.fetchone() is not None:
                    return None
            cursor.execute(self._enqueue_sql, params)
            inserted = cursor.fetchone()
            if inserted is None:
                return None
            task_id = int(inserted[0])
            if log is not None:
                self._guarded.insert_logs(cursor, [log._replace(task_id=task_id)])
            if notify:
                self.notify_new_tasks_raw(cursor)
        return task_id

    def notify_new_tasks(self, conn: Connection) -> None:
        self.notify_new_tasks_locally()

    def notify_new_tasks_raw(self, cursor: Any) -> None:
        self.notify_new_tasks_locally()

    def notify_finished_raw(self, cursor: Any, task_ids: Collection[int]) -> None:
        pass  # nothing listens on SQLite: a wait re-reads its task at the poll interval

    def finished_listener(self, engine: Engine) -> FinishedWaiters:
        return FinishedWaiters()

    def notify_new_tasks_locally(self) -> None:
        for waiter in list(self._local_wakeups):
            waiter.wake()

    def is_unavailable(self, error: BaseException) -> bool:
        orig = getattr(error, "orig", error)
        if not isinstance(orig, sqlite3.OperationalError):
            return False
        message = str(orig).lower()
        return any(
            phrase in message
            for phrase in (
                "database is locked",
                "database is busy",
                "disk i/o error",
                "unable to open",
                # SQLITE_FULL: the disk (or max_page_count) is full. Nothing is written, the
                # transaction rolls back: worth retrying once space comes back.
                "database or disk is full",
                # SQLITE_READONLY: file or directory not writable (or a read-only mount); an
                # operator's fix, after which writing works again.
                "readonly database",
            )
        )

    def unavailable_reason(self, error: BaseException) -> str:
        orig = getattr(error, "orig", error)
        if (getattr(orig, "sqlite_errorcode", 0) or 0) & 0xFF == SQLITE_FULL or (
            "database or disk is full" in str(orig).lower()
        ):
            return DISK_FULL
        # Growing the WAL index (-shm) on a full disk fails as SQLITE_IOERR, not SQLITE_FULL:
        # the free space of the database's file system tells which it was.
        if "disk i/o error" in str(orig).lower() and self._disk_is_full():
            return DISK_FULL
        return first_line(error)

    def _disk_is_full(self) -> bool:
        path = getattr(self, "_database_path", None)
        if path is None:
            return False
        try:
            return shutil.disk_usage(path.parent).free < DISK_FULL_FREE_BYTES
        except OSError:
            return False

    def is_missing_schema(self, error: BaseException) -> bool:
        orig = getattr(error, "orig", error)
        return isinstance(orig, sqlite3.OperationalError) and "no such table" in str(orig)

    def missing_database(self, url: str) -> str | None:
        path = _file_of(url)
        return None if path is None or path.is_file() else str(path)

    def new_task_waiter(self, engine: Engine) -> _DataVersionWaiter:
        waiter = _DataVersionWaiter(engine)
        self._local_wakeups.add(waiter)
        return waiter

    def reset_id_sequence(self, conn: Connection, table: str, column: str) -> None:
        """Nothing to do: an AUTOINCREMENT table's sqlite_sequence follows explicit ids."""

    # --- maintenance ---

    def periodic_maintenance(self) -> frozenset[str]:
        # The WAL file is ours to keep small, and PRAGMA optimize is cheap.
        return frozenset({JOB_CHECKPOINT, JOB_OPTIMIZE})

    def database_file(self, engine: Engine) -> Path | None:
        """The database file; maintenance on in-memory databases makes no sense."""
        database = engine.url.database
        if not database or database == ":memory:" or database.startswith("file:"):
            raise NotSupportedOnBackend(
                f"{engine.url.render_as_string(hide_password=True)} is not an SQLite database file"
            )
        return Path(database)

    def _file_sizes(self, engine: Engine) -> tuple[int, int]:
        path = self.database_file(engine)
        assert path is not None
        return file_size(path), file_size(path.with_name(path.name + "-wal"))

    def analyze(self, engine: Engine) -> str:
        with raw_sqlite(engine, self) as conn:
            _in_write_transaction(conn, "ANALYZE", "PRAGMA optimize")
        return "analyze: ANALYZE and PRAGMA optimize done"

    def optimize(self, engine: Engine) -> str:
        with raw_sqlite(engine, self) as conn:
            _in_write_transaction(conn, "PRAGMA optimize")
        return "optimize: PRAGMA optimize done"

    def vacuum(self, engine: Engine) -> None:
        # VACUUM rewrites the file through the WAL: a TRUNCATE checkpoint brings it back to 0.
        with raw_sqlite(engine, self) as conn:
            conn.execute("VACUUM")
        self.wal_checkpoint(engine, "truncate")

    def storage_bytes(self, engine: Engine) -> int:
        return sum(self._file_sizes(engine))

    def storage_lines(self, engine: Engine) -> list[str]:
        database_bytes, wal_bytes = self._file_sizes(engine)
        return [f"database  {database_bytes} bytes", f"wal       {wal_bytes} bytes"]

    def wal_bytes(self, engine: Engine) -> int:
        return self._file_sizes(engine)[1]

    def wal_checkpoint(self, engine: Engine, mode: str) -> tuple[bool, int, int]:
        if mode.upper() not in ("PASSIVE", "FULL", "RESTART", "TRUNCATE"):
            raise ValueError(f"unknown checkpoint mode {mode!r}")
        with raw_sqlite(engine, self) as conn:
            busy, log_frames, checkpointed = conn.execute(
                f"PRAGMA wal_checkpoint({mode.upper()})"
            ).fetchone()
        return bool(busy), int(log_frames), int(checkpointed)


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


@contextmanager
def raw_sqlite(engine: Engine, dialect: SqliteDialect) -> Iterator[sqlite3.Connection]:
    """A pooled sqlite3 connection outside any transaction (checkpoint and VACUUM need that).

    It carries the engine's PRAGMAs (WAL, busy_timeout, foreign_keys). Busy errors become
    :class:`DatabaseUnavailable`, as they do for the repositories.
    """
    pooled = engine.raw_connection()
    try:
        conn = pooled.driver_connection
        assert isinstance(conn, sqlite3.Connection)
        try:
            yield conn
        except sqlite3.OperationalError as exc:
            if conn.in_transaction:
                conn.rollback()
            if dialect.is_unavailable(exc):
                raise DatabaseUnavailable(f"database unavailable: {exc}") from exc
            raise
    finally:
        pooled.close()


def _in_write_transaction(conn: sqlite3.Connection, *statements: str) -> None:
    # ANALYZE reads the tables, then writes sqlite_stat1. Run as a deferred transaction it
    # fails with SQLITE_BUSY at once, whatever busy_timeout says, when another process
    # commits in between (seen with four workers starting together): take the lock first.
    conn.execute("BEGIN IMMEDIATE")
    for statement in statements:
        conn.execute(statement)
    conn.execute("COMMIT")


def _file_of(url: str) -> Path | None:
    """The file an SQLite URL names; None for an in-memory database or a file: URI."""
    database = make_url(url).database
    if database and database != ":memory:" and not database.startswith("file:"):
        return Path(database)
    return None


def _install_pragmas(engine: Engine, busy_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        # Take transaction control away from the sqlite3 module: the "begin" hook below
        # emits BEGIN IMMEDIATE itself (see docs/configuration.md).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            mode = cursor.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode not in ("wal", "memory"):
                raise UnsupportedDatabase(
                    f"SQLite refused WAL mode (journal_mode={mode}); the database must be "
                    "on a local file system"
                )
            for pragma in (
                "PRAGMA synchronous=NORMAL",
                f"PRAGMA busy_timeout={busy_ms}",
                "PRAGMA foreign_keys=ON",
                "PRAGMA temp_store=MEMORY",
                f"PRAGMA cache_size=-{SQLITE_CACHE_SIZE_KIB}",
                f"PRAGMA wal_autocheckpoint={SQLITE_WAL_AUTOCHECKPOINT_PAGES}",
                f"PRAGMA journal_size_limit={SQLITE_JOURNAL_SIZE_LIMIT_BYTES}",
            ):
                cursor.execute(pragma)
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(conn: Connection) -> None:
        # A deferred transaction that later needs the write lock fails with SQLITE_BUSY at
        # once, whatever busy_timeout says; IMMEDIATE waits for the lock up front instead.
        read_only = conn.get_execution_options().get(READ_ONLY_OPTION, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


class _DataVersionWaiter:
    """Sleeps until another connection commits (PRAGMA data_version) or this process enqueues."""

    in_loop = True  # polling data_version is cheap enough for the worker's own loop

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._event = threading.Event()
        self._conn: Any = None
        self._version: int | None = None
        self._last_change = time.monotonic()
        self._failed = False

    @property
    def listening(self) -> bool:
        return self._version is not None

    def wake(self) -> None:
        self._event.set()

    def _data_version(self) -> int:
        if self._conn is None:
            self._conn = self._engine.raw_connection()
        cursor = self._conn.cursor()
        try:
            row = cursor.execute("PRAGMA data_version").fetchone()
        finally:
            cursor.close()
        return int(row[0])

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        try:
            if self._version is None:
                self._version = self._data_version()
                if self._failed:  # commits while it could not read were missed: look now
                    self._failed = False
                    return True
            while True:
                now = time.monotonic()
                if now >= deadline:
                    return False
                fast = now - self._last_change < DATA_VERSION_FAST_WINDOW
                step = DATA_VERSION_FAST_INTERVAL if fast else min(timeout, 0.05)
                if self._event.wait(min(step, deadline - now)):
                    self._event.clear()
                    self._last_change = time.monotonic()
                    return True
                version = self._data_version()
                if version != self._version:
                    self._version = version
                    self._last_change = time.monotonic()
                    return True
        except (DBAPIError, sqlite3.Error):
            self.close()
            self._failed = True
            time.sleep(max(0.0, min(timeout, deadline - time.monotonic())))
            return False

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None
                self._version = None
