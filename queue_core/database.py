"""A Database: the engine for one URL, its Dialect (the seam to the backend), and
transaction helpers."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from sqlalchemy import Connection, Engine, select
from sqlalchemy.exc import DBAPIError

from queue_core.audit import TaskLogWriter
from queue_core.dialects import READ_ONLY_OPTION, Dialect, TaskWaiter, dialect_for
from queue_core.dialects.connections import RawWriter
from queue_core.dialects.finished import FinishedWaiters
from queue_core.errors import DatabaseMissing, DatabaseUnavailable, SchemaMissing
from queue_core.settings import QueueSettings, resolve_database_url
from queue_core.types import utc_now_default


class Database:
    """Owns one engine. Share one per process; it is thread-safe."""

    def __init__(
        self, url: str | None = None, settings: QueueSettings | None = None, *, create: bool = True
    ) -> None:
        """``create=False`` refuses (:class:`DatabaseMissing`) to create a database that does
        not exist yet, file or directory: for callers that only read."""
        self.settings = settings or QueueSettings()
        resolved = resolve_database_url(url, self.settings)
        self.dialect: Dialect = dialect_for(resolved)
        if not create:
            missing = self.dialect.missing_database(resolved)
            if missing is not None:
                raise DatabaseMissing(missing)
        self.engine: Engine = self.dialect.create_engine(resolved, self.settings)
        # The URL the engine really uses (postgresql:// and postgres:// name psycopg 3), so
        # whatever reuses it, Alembic among them, picks the same driver.
        self.url = self.engine.url.render_as_string(hide_password=False)
        self.log_writer = TaskLogWriter(self.dialect, self.settings.audit)
        """The one task_logs writer (PRISMQ_QUEUE_AUDIT applied)."""
        self._raw: RawWriter | None = None
        self._raw_lock = threading.Lock()
        self._finished: FinishedWaiters | None = None

    @property
    def raw(self) -> RawWriter:
        """The hot path's writer: DBAPI transactions on connections kept for this engine."""
        with self._raw_lock:
            if self._raw is None:
                self._raw = self.dialect.raw_writer(self.engine)
            return self._raw

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction: BEGIN IMMEDIATE on SQLite, so the write lock is taken up front."""
        with self._translate_errors(), self.engine.begin() as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A short read transaction (deferred on SQLite, so it never waits for the writer)."""
        with (
            self._translate_errors(),
            self.engine.connect().execution_options(**{READ_ONLY_OPTION: True}) as conn,
            conn.begin(),
        ):
            yield conn

    @contextmanager
    def _translate_errors(self) -> Iterator[None]:
        try:
            yield
        except DBAPIError as exc:
            if self.dialect.is_missing_schema(exc):
                raise SchemaMissing(self.safe_url) from exc
            if self.dialect.is_unavailable(exc):
                reason = self.dialect.unavailable_reason(exc)
                raise DatabaseUnavailable(f"database unavailable: {reason}") from exc
            raise

    def now(self) -> datetime:
        """The database server's clock (``now()`` on PostgreSQL), for :class:`DatabaseClock`."""
        with self.read() as conn:
            value: datetime = conn.execute(select(utc_now_default())).scalar_one()
        return value

    @property
    def finished_waiters(self) -> FinishedWaiters:
        """Every wait for a finished task of this Database registers here (one listener for
        all of them: ``Dialect.finished_listener``)."""
        with self._raw_lock:
            if self._finished is None:
                self._finished = self.dialect.finished_listener(self.engine)
            return self._finished

    def new_task_waiter(self) -> TaskWaiter:
        return self.dialect.new_task_waiter(self.engine)

    @property
    def safe_url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def dispose(self) -> None:
        with self._raw_lock:
            finished, self._finished = self._finished, None
        if finished is not None:
            finished.close()
        self.engine.dispose()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.dispose()
