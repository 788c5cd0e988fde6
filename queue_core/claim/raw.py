"""The hot lease path's own DBAPI connection: claim and complete without SQLAlchemy's
per-transaction work.

Measured on SQLite (docs/benchmarks.md): SQLAlchemy's pool checkout, begin/commit events,
statement coercion and result processing cost several times the SQL itself for a one-row
claim or completion. The hot path therefore keeps one DBAPI connection per LeaseRepository
(checked out of the engine's pool, so it has the engine's PRAGMAs and session settings), runs
the same raw SQL on it, and converts values itself. Nothing else changes: SQLite still starts
each write with ``BEGIN IMMEDIATE``, each claim is one statement, every transition writes its
task_logs row in the same transaction, and driver errors are translated as
:meth:`Database.write` does (``DatabaseUnavailable``, ``SchemaMissing``).

A lock serialises the repository's transactions on the connection. On SQLite, writes are
serialised by the database anyway; queueing them in-process spares the busy handler's sleeps.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

from sqlalchemy.exc import DBAPIError

from queue_core.claim import postgresql as postgresql_sql
from queue_core.claim import sqlite as sqlite_sql
from queue_core.database import Database
from queue_core.errors import DatabaseUnavailable, SchemaMissing

DIALECT_SQL: dict[str, ModuleType] = {"sqlite": sqlite_sql, "postgresql": postgresql_sql}


def _close_quietly(connection: Any) -> None:
    try:
        connection.close()
    except Exception:  # noqa: BLE001 - closing a broken connection may fail; nothing to do
        return


class RawWriter:
    """Write transactions on one kept DBAPI connection; thread-safe."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.sql: ModuleType = DIALECT_SQL[db.dialect]
        self._lock = threading.Lock()
        self._connection: Any = None
        self._dbapi_error: type[Exception] = db.engine.dialect.loaded_dbapi.Error
        self._finalizer: weakref.finalize[Any, Any] | None = None

    def _connect(self) -> Any:
        if self._connection is None:
            try:
                self._connection = self.db.engine.raw_connection()
            except DBAPIError as exc:
                raise self._translate(exc.orig or exc, exc) from exc
            if self._finalizer is not None:
                self._finalizer.detach()
            self._finalizer = weakref.finalize(self, _close_quietly, self._connection)
        return self._connection

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """A write transaction; yields a DBAPI cursor (named parameters as ``:name`` on SQLite,
        ``%(name)s`` on PostgreSQL: use the statements of the dialect module)."""
        with self._lock:
            connection = self._connect()
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
                raise self._translate(exc, None) from exc

    def _rollback(self, connection: Any) -> None:
        try:
            connection.rollback()
        except self._dbapi_error:
            self._drop()

    def _drop(self) -> None:
        """Forget a connection that failed; the next transaction takes a fresh one."""
        if self._connection is not None:
            try:
                self._connection.invalidate()
            except Exception:  # noqa: BLE001 - it is being thrown away
                _close_quietly(self._connection)
            self._connection = None

    def _translate(self, error: BaseException, wrapped: DBAPIError | None) -> Exception:
        backend = self.db.backend
        if backend.is_missing_schema(error):
            return SchemaMissing(self.db.safe_url)
        if backend.is_unavailable(error):
            self._drop()
            return DatabaseUnavailable(f"database unavailable: {_first_line(error)}")
        if wrapped is not None:
            return wrapped
        # Keep SQLAlchemy's exception classes (IntegrityError, ...) for callers that catch them.
        translated = DBAPIError.instance(None, None, error, self._dbapi_error)
        return translated if isinstance(translated, Exception) else RuntimeError(str(error))

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                if self._finalizer is not None:
                    self._finalizer.detach()
                _close_quietly(self._connection)
                self._connection = None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
