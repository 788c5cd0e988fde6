"""PostgreSQL through psycopg 3: a pooled engine, jsonb, and LISTEN/NOTIFY wake-ups.

The dialect's SQL is in :mod:`queue_core.dialects.postgresql_sql`; the hot path keeps a small
stack of idle DBAPI connections per engine
(:class:`queue_core.dialects.connections.IdleConnections`).
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, event, text
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from queue_core.dialects import DISK_FULL, GuardedResult, GuardedRow, LogRow, first_line
from queue_core.dialects import postgresql_sql as sql_module
from queue_core.dialects.claiming import TaskClaimer, create_claimer
from queue_core.dialects.connections import RawWriter, idle_for
from queue_core.dialects.finished import finished_payload
from queue_core.dialects.guarded import GuardedStatements
from queue_core.dialects.pg_listener import (
    ListenerPresence,
    PgFinishedListener,
    listen_connection,
)
from queue_core.errors import NotSupportedOnBackend, UnsupportedDatabase
from queue_core.settings import (
    PG_FINISHED_CHANNEL,
    PG_FINISHED_PAYLOAD_MAX_BYTES,
    PG_LISTEN_PROBE_SECONDS,
    PG_MAX_OVERFLOW,
    PG_NOTIFY_CHANNEL,
    PG_POOL_TIMEOUT_SECONDS,
    QueueSettings,
)
from queue_core.states import SchedulingStrategy

log = logging.getLogger("prismq.queue.postgresql")

# SQLSTATE classes worth a retry: connection exceptions, operator intervention (restart,
# shutdown), serialization failures and deadlocks, insufficient resources.
RETRYABLE_SQLSTATE_PREFIXES = ("08", "57", "40", "53")
UNDEFINED_TABLE = "42P01"
DISK_FULL_SQLSTATE = "53100"

# The tables the queue owns: maintenance never touches anything else in a shared database.
QUEUE_TABLES = ("task_queue", "task_logs", "workers", "task_queue_clock", "maintenance_leases")

POSTGRESQL_CHECKPOINT_MESSAGE = (
    "PostgreSQL checkpoints its own WAL (checkpoint_timeout, max_wal_size); "
    "nothing to do for the queue"
)


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


class PostgresDialect:
    name = "postgresql"
    sql = sql_module

    def __init__(self) -> None:
        self._enqueue_logged_sql = sql_module.dbapi_sql(sql_module.ENQUEUE_LOGGED_SQL)
        self._enqueue_notify_sql = sql_module.dbapi_sql(sql_module.ENQUEUE_NOTIFY_SQL)
        self._guarded = GuardedStatements(sql_module)
        self._notify_finished_sql = "SELECT pg_notify(%s, %s)"
        self._listeners = ListenerPresence()

    def create_engine(self, url: str, settings: QueueSettings) -> Engine:
        try:
            import psycopg  # noqa: F401
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise UnsupportedDatabase(
                "PostgreSQL needs psycopg 3: pip install 'prismq-queue[postgres]'"
            ) from exc
        engine = sa_create_engine(
            normalise_url(url),
            pool_size=settings.pg_pool_size,
            max_overflow=PG_MAX_OVERFLOW,
            pool_timeout=PG_POOL_TIMEOUT_SECONDS,
            pool_pre_ping=True,
            json_serializer=lambda value: orjson.dumps(value).decode(),
            json_deserializer=orjson.loads,
            # psycopg prepares a statement on the server after a few executions. Behind a
            # pooler in transaction mode (PgBouncer before 1.21) the next transaction may
            # run on another server connection, where it does not exist: "prepared
            # statement _pg3_N does not exist" (docs/scale-out.md#pgbouncer).
            connect_args={} if settings.pg_prepared_statements else {"prepare_threshold": None},
        )
        lost_client_ms = int(settings.pg_lost_client_timeout_seconds * 1000)
        if lost_client_ms > 0:
            event.listen(engine, "connect", _session_settings(lost_client_ms))
        return engine

    def raw_writer(self, engine: Engine) -> RawWriter:
        # Writes run in parallel: a connection per transaction from a stack kept idle.
        return RawWriter(engine, self, idle=idle_for(engine))

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
        # One statement in autocommit, i.e. one round trip (ENQUEUE_LOGGED_SQL says how).
        with writer.statement() as cursor:
            if log is None:
                cursor.execute(self._enqueue_notify_sql, {**params, "notify": notify})
            else:
                details = None if log.details is None else orjson.dumps(log.details).decode()
                cursor.execute(
                    self._enqueue_logged_sql, {**params, "details": details, "notify": notify}
                )
            inserted = cursor.fetchone()
        return None if inserted is None else int(inserted[0])

    def notify_new_tasks(self, conn: Connection) -> None:
        # Delivered at commit; PostgreSQL folds identical notifications of one transaction.
        conn.exec_driver_sql(f"NOTIFY {PG_NOTIFY_CHANNEL}")

    def notify_new_tasks_raw(self, cursor: Any) -> None:
        cursor.execute(f"NOTIFY {PG_NOTIFY_CHANNEL}")

    def notify_finished_raw(self, cursor: Any, task_ids: Collection[int]) -> None:
        if task_ids and self._listeners.someone_listens(cursor):
            payload = finished_payload(task_ids, PG_FINISHED_PAYLOAD_MAX_BYTES)
            cursor.execute(self._notify_finished_sql, (PG_FINISHED_CHANNEL, payload))

    def finished_listener(self, engine: Engine) -> PgFinishedListener:
        return PgFinishedListener(engine.url)

    def is_unavailable(self, error: BaseException) -> bool:
        if isinstance(error, DBAPIError) and error.connection_invalidated:
            return True
        state = _sqlstate(error)
        if state is None:
            orig = getattr(error, "orig", error)
            name = type(orig).__name__
            return name in ("OperationalError", "InterfaceError", "PoolTimeout")
        return state.startswith(RETRYABLE_SQLSTATE_PREFIXES)

    def unavailable_reason(self, error: BaseException) -> str:
        # 53100 disk_full (class 53, insufficient resources, is already worth a retry).
        return DISK_FULL if _sqlstate(error) == DISK_FULL_SQLSTATE else first_line(error)

    def is_missing_schema(self, error: BaseException) -> bool:
        return _sqlstate(error) == UNDEFINED_TABLE

    def new_task_waiter(self, engine: Engine) -> _ListenWaiter:
        return _ListenWaiter(engine)

    def missing_database(self, url: str) -> str | None:
        return None  # a server: a missing database shows as an error on connect

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

    # --- maintenance ---

    def periodic_maintenance(self) -> frozenset[str]:
        # The server checkpoints its own WAL, and autovacuum keeps statistics fresh.
        return frozenset()

    def database_file(self, engine: Engine) -> Path | None:
        return None

    def analyze(self, engine: Engine) -> str:
        with _autocommit(engine) as conn:
            conn.exec_driver_sql(f"ANALYZE {', '.join(QUEUE_TABLES)}")
        return "analyze: ANALYZE done"

    def optimize(self, engine: Engine) -> str:
        return "optimize: nothing to do on PostgreSQL (autovacuum analyses)"

    def vacuum(self, engine: Engine) -> None:
        with _autocommit(engine) as conn:
            conn.exec_driver_sql(f"VACUUM (ANALYZE) {', '.join(QUEUE_TABLES)}")

    def storage_bytes(self, engine: Engine) -> int:
        """The on-disk size of the queue's tables, their indexes and TOAST."""
        sizes = " + ".join(f"pg_total_relation_size('{table}')" for table in QUEUE_TABLES)
        with engine.connect() as conn:
            return int(conn.execute(text(f"SELECT {sizes}")).scalar_one())

    def storage_lines(self, engine: Engine) -> list[str]:
        return [f"queue tables  {self.storage_bytes(engine)} bytes"]

    def wal_bytes(self, engine: Engine) -> int:
        return 0  # no queue-owned WAL file

    def wal_checkpoint(self, engine: Engine, mode: str) -> tuple[bool, int, int]:
        raise NotSupportedOnBackend(POSTGRESQL_CHECKPOINT_MESSAGE)


def _session_settings(lost_client_ms: int) -> Callable[[Any, Any], None]:
    """Every queue session ends itself once its client has been unreachable this long.

    A worker host cut off from the network in the middle of a transaction leaves its server
    session holding that transaction's row locks. Claims and lease recovery skip locked rows,
    so the tasks it held stay leased until PostgreSQL notices the dead client: with default
    TCP settings, from 15 minutes (results never acknowledged) to 2 hours (keepalive). Found by
    the partition test (tests/scaleout). Three server settings close the three ways a session
    can wait on a vanished client:

    * ``idle_in_transaction_session_timeout``: the client finished a statement and went quiet;
    * ``tcp_user_timeout``: the server's last results are never acknowledged (the cut came
      while they were on the wire; the session waits for the rest of the client's messages
      and the idle timer above is not even armed);
    * ``tcp_keepalives_*``: everything was acknowledged, then silence.

    All three are per-session (USERSET) and only end sessions whose client is gone; the
    queue's own transactions never keep the server waiting that long. A setting the server
    refuses (``tcp_user_timeout`` off Linux) is skipped.
    """
    seconds = max(1, lost_client_ms // 1000)
    settings = {
        "idle_in_transaction_session_timeout": str(lost_client_ms),
        "tcp_user_timeout": str(lost_client_ms),
        "tcp_keepalives_idle": str(max(1, seconds // 2)),
        "tcp_keepalives_interval": str(max(1, seconds // 6)),
        "tcp_keepalives_count": "3",
    }

    def apply(dbapi_connection: Any, _record: Any) -> None:
        was_autocommit = dbapi_connection.autocommit
        dbapi_connection.autocommit = True
        try:
            for name, value in settings.items():
                try:
                    dbapi_connection.execute("SELECT set_config(%s, %s, false)", (name, value))
                except Exception as exc:  # noqa: BLE001 - an unsupported setting is skipped
                    log.debug("cannot set %s: %s", name, exc)
        finally:
            dbapi_connection.autocommit = was_autocommit

    return apply


def _autocommit(engine: Engine) -> Connection:
    """A connection outside a transaction block (VACUUM refuses to run inside one)."""
    return engine.connect().execution_options(isolation_level="AUTOCOMMIT")


class _ListenWaiter:
    """LISTEN on a connection of its own; falls back to plain sleeping when that fails.

    ``wait`` blocks on the socket, so it runs in a thread of its own (``in_loop`` is False).
    :meth:`wake` takes effect at once when no wait is blocked; a wait already blocked ends at
    the next notification or its timeout. ``listening`` is True only once a notification sent
    from another connection came through: behind PgBouncer in transaction mode the LISTEN
    runs on a server connection lent for that statement alone and nothing ever arrives.
    """

    in_loop = False

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._url = engine.url
        self._conn: Any = None
        self._woken = threading.Event()
        self.listening = False

    def wake(self) -> None:
        self._woken.set()

    def _connect(self) -> Any:
        # Not named like a wait's listener: writers would notify finished tasks for it.
        conn = listen_connection(self._url, PG_NOTIFY_CHANNEL, application_name=None)
        try:
            self.listening = self._delivers(conn)
        except BaseException:
            conn.close()
            raise
        if not self.listening:
            log.warning(
                "notifications do not reach the LISTEN connection (PgBouncer in transaction "
                "mode?): idle workers poll every poll interval"
            )
        return conn

    def _delivers(self, conn: Any) -> bool:
        """Whether a notification sent on another connection arrives within
        PG_LISTEN_PROBE_SECONDS (on a channel of its own: the other workers sleep on)."""
        channel = f"{PG_NOTIFY_CHANNEL}_probe_{uuid.uuid4().hex[:16]}"
        conn.execute(f"LISTEN {channel}")
        with self._engine.connect() as other:
            other.execute(text("SELECT pg_notify(:channel, '')"), {"channel": channel})
            other.commit()
        deadline = time.monotonic() + PG_LISTEN_PROBE_SECONDS
        arrived = False
        while not arrived and (left := deadline - time.monotonic()) > 0:
            for notification in conn.notifies(timeout=left, stop_after=1):
                arrived = notification.channel == channel
        conn.execute(f"UNLISTEN {channel}")
        return arrived

    def wait(self, timeout: float) -> bool:
        if self._woken.is_set():
            self._woken.clear()
            return True
        started = time.monotonic()
        try:
            if self._conn is None:
                self._conn = self._connect()
                return True  # what was announced while nothing listened was missed: look now
            for _ in self._conn.notifies(timeout=timeout, stop_after=1):
                return True
            return False
        except Exception as exc:  # noqa: BLE001 - any failure means: poll instead
            log.warning("LISTEN failed (%s); polling instead until it works again", exc)
            self.close()
            time.sleep(max(0.0, timeout - (time.monotonic() - started)))
            return False

    def close(self) -> None:
        self.listening = False
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                log.debug("closing the LISTEN connection failed", exc_info=True)
            self._conn = None
