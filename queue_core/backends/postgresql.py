"""PostgreSQL through psycopg 3: a pooled engine, jsonb, and LISTEN/NOTIFY wake-ups."""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, Insert, Table, text
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from queue_core.errors import UnsupportedDatabase
from queue_core.settings import (
    PG_MAX_OVERFLOW,
    PG_NOTIFY_CHANNEL,
    PG_POOL_TIMEOUT_SECONDS,
    QueueSettings,
)

log = logging.getLogger("prismq.queue.postgresql")

# SQLSTATE classes worth a retry: connection exceptions, operator intervention (restart,
# shutdown), serialization failures and deadlocks, insufficient resources.
RETRYABLE_SQLSTATE_PREFIXES = ("08", "57", "40", "53")
UNDEFINED_TABLE = "42P01"


def normalise_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 here; SQLAlchemy alone would pick psycopg2."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername != "postgresql+psycopg":
        raise UnsupportedDatabase(
            f"driver {parsed.drivername!r} is not supported: use postgresql+psycopg://"
        )
    return parsed.render_as_string(hide_password=False)


def _sqlstate(error: BaseException) -> str | None:
    orig = getattr(error, "orig", error)
    return getattr(orig, "sqlstate", None)


class PostgresBackend:
    name = "postgresql"

    def create_engine(self, url: str, settings: QueueSettings) -> Engine:
        try:
            import psycopg  # noqa: F401
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise UnsupportedDatabase(
                "PostgreSQL needs psycopg 3: pip install 'prismq-queue[postgres]'"
            ) from exc
        return sa_create_engine(
            normalise_url(url),
            pool_size=settings.pg_pool_size,
            max_overflow=PG_MAX_OVERFLOW,
            pool_timeout=PG_POOL_TIMEOUT_SECONDS,
            pool_pre_ping=True,
            json_serializer=lambda value: orjson.dumps(value).decode(),
            json_deserializer=orjson.loads,
        )

    def insert_ignoring_key_conflict(self, table: Table) -> Insert:
        return pg_insert(table).on_conflict_do_nothing(
            index_elements=["idempotency_key"],
            index_where=text("idempotency_key IS NOT NULL"),
        )

    def notify_new_tasks(self, conn: Connection) -> None:
        # Delivered at commit; PostgreSQL folds identical notifications of one transaction.
        conn.exec_driver_sql(f"NOTIFY {PG_NOTIFY_CHANNEL}")

    def notify_new_tasks_raw(self, cursor: Any) -> None:
        cursor.execute(f"NOTIFY {PG_NOTIFY_CHANNEL}")

    def is_unavailable(self, error: BaseException) -> bool:
        if isinstance(error, DBAPIError) and error.connection_invalidated:
            return True
        state = _sqlstate(error)
        if state is None:
            orig = getattr(error, "orig", error)
            name = type(orig).__name__
            return name in ("OperationalError", "InterfaceError", "PoolTimeout")
        return state.startswith(RETRYABLE_SQLSTATE_PREFIXES)

    def is_missing_schema(self, error: BaseException) -> bool:
        return _sqlstate(error) == UNDEFINED_TABLE

    def new_task_waiter(self, engine: Engine) -> _ListenWaiter:
        return _ListenWaiter(engine)

    def reset_id_sequence(self, conn: Connection, table: str, column: str) -> None:
        # A serial column's sequence does not see explicit ids; without this the next
        # enqueue after `db copy` would collide with id 1. No sequence: setval(NULL) is NULL.
        conn.execute(
            text(
                f"SELECT setval(pg_get_serial_sequence(:table, :column), "
                f"coalesce(max({column}), 0) + 1, false) FROM {table}"
            ),
            {"table": table, "column": column},
        )


class _ListenWaiter:
    """LISTEN on a connection of its own; falls back to plain sleeping when that fails."""

    def __init__(self, engine: Engine) -> None:
        self._url = engine.url
        self._conn: Any = None

    def _connect(self) -> Any:
        import psycopg

        params: dict[str, Any] = {
            "host": self._url.host,
            "port": self._url.port,
            "user": self._url.username,
            "password": self._url.password,
            "dbname": self._url.database,
        }
        params.update(self._url.query)  # e.g. options=-csearch_path=...
        conn = psycopg.connect(
            autocommit=True, **{k: v for k, v in params.items() if v is not None}
        )
        conn.execute(f"LISTEN {PG_NOTIFY_CHANNEL}")
        return conn

    def wait(self, timeout: float) -> bool:
        started = time.monotonic()
        try:
            if self._conn is None:
                self._conn = self._connect()
            for _ in self._conn.notifies(timeout=timeout, stop_after=1):
                return True
            return False
        except Exception as exc:  # noqa: BLE001 - any failure means: poll instead
            log.warning("LISTEN failed (%s); polling instead until it works again", exc)
            self.close()
            time.sleep(max(0.0, timeout - (time.monotonic() - started)))
            return False

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                log.debug("closing the LISTEN connection failed", exc_info=True)
            self._conn = None
