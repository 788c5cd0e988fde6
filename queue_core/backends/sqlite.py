"""SQLite: one file in WAL mode, every write transaction started with BEGIN IMMEDIATE."""

from __future__ import annotations

import logging
import re
import sqlite3
import sys
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, Insert, Table, event, text
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from queue_core.errors import UnsupportedDatabase
from queue_core.settings import (
    SQLITE_CACHE_SIZE_KIB,
    SQLITE_JOURNAL_SIZE_LIMIT_BYTES,
    SQLITE_MIN_VERSION,
    SQLITE_WAL_AUTOCHECKPOINT_PAGES,
    QueueSettings,
)

log = logging.getLogger("prismq.queue.sqlite")

READ_ONLY_OPTION = "prismq_read_only"
"""Execution option: a connection carrying it begins a deferred (read) transaction."""

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


class SqliteBackend:
    name = "sqlite"

    def __init__(self) -> None:
        # Wakes workers of this process at once when this process enqueues.
        self._local_wakeups: weakref.WeakSet[_DataVersionWaiter] = weakref.WeakSet()

    def create_engine(self, url: str, settings: QueueSettings) -> Engine:
        check_sqlite_version()
        database = make_url(url).database
        if database and database != ":memory:" and not database.startswith("file:"):
            path = Path(database)
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

    def insert_ignoring_key_conflict(self, table: Table) -> Insert:
        return sqlite_insert(table).on_conflict_do_nothing(
            index_elements=["idempotency_key"],
            index_where=text("idempotency_key IS NOT NULL"),
        )

    def notify_new_tasks(self, conn: Connection) -> None:
        self.notify_new_tasks_locally()

    def notify_new_tasks_raw(self, cursor: Any) -> None:
        self.notify_new_tasks_locally()

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
            )
        )

    def is_missing_schema(self, error: BaseException) -> bool:
        orig = getattr(error, "orig", error)
        return isinstance(orig, sqlite3.OperationalError) and "no such table" in str(orig)

    def new_task_waiter(self, engine: Engine) -> _DataVersionWaiter:
        waiter = _DataVersionWaiter(engine)
        self._local_wakeups.add(waiter)
        return waiter

    def reset_id_sequence(self, conn: Connection, table: str, column: str) -> None:
        """Nothing to do: an AUTOINCREMENT table's sqlite_sequence follows explicit ids."""


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

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._event = threading.Event()
        self._conn: Any = None
        self._version: int | None = None
        self._last_change = time.monotonic()

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
        except DBAPIError:
            self.close()
            time.sleep(max(0.0, min(timeout, deadline - time.monotonic())))
            return False
        except sqlite3.Error:
            self.close()
            time.sleep(max(0.0, min(timeout, deadline - time.monotonic())))
            return False

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None
                self._version = None
