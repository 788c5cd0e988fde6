"""The hot lease path's own DBAPI connection: claim and complete without SQLAlchemy's
per-transaction work.

Measured on SQLite (docs/benchmarks.md): SQLAlchemy's pool checkout, begin/commit events,
statement coercion and result processing cost several times the SQL itself for a one-row
claim or completion. The hot path therefore keeps one DBAPI connection per LeaseRepository
(checked out of the engine's pool, so it has the engine's PRAGMAs and session settings), runs
the same raw SQL on it, and converts values itself. Nothing else changes: SQLite still starts
each write with ``BEGIN IMMEDIATE``, each claim is one statement, every transition writes its
task_logs row in the same transaction, and driver errors are translated as
:meth:`queue_core.database.Database.write` does (``DatabaseUnavailable``, ``SchemaMissing``).

On SQLite the connection is kept: one per engine, shared by every repository on it,
behind a lock. Writes are serialised by the database anyway; queueing them in-process spares
the busy handler's sleeps, and the pool's checkout and reset (~0.1 ms each way) are paid once.
It is closed when the engine is disposed (:class:`KeptConnection`, which the SQLite dialect
gives its writer). On PostgreSQL, where writes do run in parallel, each transaction takes a
connection of its own from a small stack of idle ones that the hot path keeps checked out of
the pool (:class:`IdleConnections`, the PostgreSQL dialect's choice). Checking one
out of SQLAlchemy's pool and back costs two round trips (the pre-ping and the reset), as much
as the statement itself; a kept connection is pinged only after it sat idle for
``PG_PING_AFTER_IDLE_SECONDS``, so a server restart still costs no failed call once the
connection has been idle, while a busy producer pays one round trip per statement.
"""

from __future__ import annotations

import contextlib
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, event
from sqlalchemy.exc import DBAPIError

from queue_core.errors import DatabaseUnavailable, SchemaMissing
from queue_core.settings import PG_PING_AFTER_IDLE_SECONDS

if TYPE_CHECKING:
    from queue_core.dialects import Dialect


def _close_quietly(connection: Any) -> None:
    try:
        connection.close()
    except Exception:  # noqa: BLE001 - closing a broken connection may fail; nothing to do
        return


def _close_for_good(connection: Any) -> None:
    """Close the DBAPI connection itself. Given back to a pool the engine has disposed of, it
    would stay open until garbage collection (on SQLite, with its WAL not checkpointed)."""
    with contextlib.suppress(Exception):  # an invalidated connection may refuse; close anyway
        connection.detach()
    _close_quietly(connection)


class KeptConnection:
    """The one connection an engine keeps for the hot path (SQLite), and its lock."""

    def __init__(self, engine: Engine) -> None:
        self.lock = threading.Lock()
        self.owner: int | None = None  # the thread inside a transaction, if any
        self.connection: Any = None
        event.listen(engine, "engine_disposed", self._on_dispose)

    def _on_dispose(self, engine: Any) -> None:
        self.close()

    def close(self) -> None:
        with self.lock:
            if self.connection is not None:
                _close_for_good(self.connection)
                self.connection = None


_kept_by_engine: weakref.WeakKeyDictionary[Engine, KeptConnection] = weakref.WeakKeyDictionary()
_kept_lock = threading.Lock()


def kept_for(engine: Engine) -> KeptConnection:
    """The engine's one kept connection (shared by every writer on it)."""
    with _kept_lock:
        kept = _kept_by_engine.get(engine)
        if kept is None:
            kept = _kept_by_engine[engine] = KeptConnection(engine)
        return kept


class IdleConnections:
    """Connections the hot path keeps checked out between transactions (PostgreSQL)."""

    def __init__(self, engine: Engine) -> None:
        self.lock = threading.Lock()
        self.idle: list[tuple[Any, float]] = []  # (connection, when it was last given back)
        size = getattr(engine.pool, "size", None)
        self.limit = max(1, size()) if callable(size) else 1
        self.ping = engine.dialect.do_ping
        event.listen(engine, "engine_disposed", self._on_dispose)

    def take(self, checkout: Any) -> Any:
        while True:
            with self.lock:
                if not self.idle:
                    break
                connection, since = self.idle.pop()
            if time.monotonic() - since < PG_PING_AFTER_IDLE_SECONDS or self._alive(connection):
                return connection
            connection.invalidate()  # dead: drop it and try the next
        return checkout()

    def _alive(self, connection: Any) -> bool:
        try:
            return bool(self.ping(connection.dbapi_connection))
        except Exception:  # noqa: BLE001 - any failure means the connection is unusable
            return False

    def give(self, connection: Any) -> None:
        if not connection.is_valid:
            return
        with self.lock:
            if len(self.idle) < self.limit:
                self.idle.append((connection, time.monotonic()))
                return
        _close_quietly(connection)

    def _on_dispose(self, engine: Any) -> None:
        self.close()

    def close(self) -> None:
        with self.lock:
            idle, self.idle = self.idle, []
        for connection, _ in idle:
            _close_for_good(connection)


_idle_by_engine: weakref.WeakKeyDictionary[Engine, IdleConnections] = weakref.WeakKeyDictionary()


def idle_for(engine: Engine) -> IdleConnections:
    """The engine's stack of idle kept connections (shared by every writer on it)."""
    with _kept_lock:
        idle = _idle_by_engine.get(engine)
        if idle is None:
            idle = _idle_by_engine[engine] = IdleConnections(engine)
        return idle


class RawWriter:
    """Write transactions on DBAPI connections of the engine; thread-safe. Cheap to create:
    every RawWriter of an engine shares its kept connections. Built by the dialect
    (:meth:`queue_core.dialects.Dialect.raw_writer`), which gives it either one kept
    connection (``kept``) or a stack of idle ones (``idle``)."""

    def __init__(
        self,
        engine: Engine,
        dialect: Dialect,
        *,
        kept: KeptConnection | None = None,
        idle: IdleConnections | None = None,
    ) -> None:
        if (kept is None) == (idle is None):
            raise ValueError("a RawWriter needs exactly one of kept and idle")
        self.engine = engine
        self.dialect = dialect
        self.sql: ModuleType = dialect.sql
        self._kept = kept
        self._idle = idle
        self._dbapi_error: type[Exception] = engine.dialect.loaded_dbapi.Error

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """A write transaction; yields a DBAPI cursor (named parameters as ``:name`` on SQLite,
        ``%(name)s`` on PostgreSQL: use ``dbapi_sql`` of the dialect module)."""
        kept = self._kept
        if kept is not None:
            if kept.owner == threading.get_ident():
                # The lock is not reentrant: waiting on it here would hang this thread.
                raise RuntimeError("a RawWriter transaction cannot be nested on one thread")
            with kept.lock:
                kept.owner = threading.get_ident()
                try:
                    if kept.connection is None:
                        kept.connection = self._checkout()
                    with self._on(kept.connection) as cursor:
                        yield cursor
                except BaseException:
                    if kept.connection is not None and not kept.connection.is_valid:
                        kept.connection = None
                    raise
                finally:
                    kept.owner = None
        else:
            assert self._idle is not None
            connection = self._idle.take(self._checkout)
            try:
                with self._on(connection) as cursor:
                    yield cursor
            finally:
                self._idle.give(connection)

    @contextmanager
    def statement(self) -> Iterator[Any]:
        """A cursor whose statements are each their own transaction (autocommit): one round
        trip for a statement that writes everything it must atomically (PostgreSQL, where
        one statement can insert into several tables). Not for the kept SQLite connection."""
        if self._idle is None:
            raise NotImplementedError("single-statement transactions are for PostgreSQL")
        connection = self._idle.take(self._checkout)
        driver = connection.driver_connection
        try:
            try:
                driver.autocommit = True
                cursor = connection.cursor()
                try:
                    yield cursor
                finally:
                    cursor.close()
                    driver.autocommit = False
            except self._dbapi_error as exc:
                raise self._translate(exc, None, connection) from exc
        finally:
            self._idle.give(connection)

    def _checkout(self) -> Any:
        try:
            return self.engine.raw_connection()
        except DBAPIError as exc:
            raise self._translate(exc.orig or exc, exc, None) from exc
        except self._dbapi_error as exc:
            # The pool re-raises a failed connect as the driver's own error, unwrapped
            # (e.g. "connection refused" while PostgreSQL restarts).
            raise self._translate(exc, None, None) from exc

    @contextmanager
    def _on(self, connection: Any) -> Iterator[Any]:
        try:
            cursor = connection.cursor()
            try:
                self.sql.begin_write(cursor)
                yield cursor
                connection.commit()
            except BaseException:
                self._rollback(connection)
                raise
            finally:
                cursor.close()
        except self._dbapi_error as exc:
            raise self._translate(exc, None, connection) from exc

    def _rollback(self, connection: Any) -> None:
        try:
            connection.rollback()
        except self._dbapi_error:
            connection.invalidate()

    def _translate(
        self, error: BaseException, wrapped: DBAPIError | None, connection: Any
    ) -> Exception:
        dialect = self.dialect
        if dialect.is_missing_schema(error):
            return SchemaMissing(self.engine.url.render_as_string(hide_password=True))
        if dialect.is_unavailable(error):
            if connection is not None and connection.is_valid:
                # Busy or gone: either way the next transaction starts on a fresh connection.
                connection.invalidate()
            return DatabaseUnavailable(f"database unavailable: {dialect.unavailable_reason(error)}")
        if wrapped is not None:
            return wrapped
        # Keep SQLAlchemy's exception classes (IntegrityError, ...) for callers that catch them.
        translated = DBAPIError.instance(None, None, error, self._dbapi_error)
        return translated if isinstance(translated, Exception) else RuntimeError(str(error))

    def close(self) -> None:
        """Close the engine's kept connections (the next transaction opens another)."""
        if self._kept is not None:
            self._kept.close()
        if self._idle is not None:
            self._idle.close()
