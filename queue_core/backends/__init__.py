"""The one seam between SQLite and PostgreSQL.

Everything that differs between the two databases lives in a :class:`Backend`: how the engine
is built and tuned, how a write transaction starts, the upsert used for idempotency keys, how
new work is announced, and how driver errors are classified. The claim SQL has its own seam in
:mod:`queue_core.claim`. Nothing else in the code asks which dialect it runs on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, Insert, Table
from sqlalchemy.engine import make_url

from queue_core.errors import UnsupportedDatabase
from queue_core.settings import QueueSettings


class Backend(Protocol):
    name: str

    def create_engine(self, url: str, settings: QueueSettings) -> Engine:
        """Build and tune the engine: pooling, session settings, transaction start."""

    def insert_ignoring_key_conflict(self, table: Table) -> Insert:
        """An INSERT that does nothing when the idempotency key already exists."""

    def notify_new_tasks(self, conn: Connection) -> None:
        """Announce committed work to sleeping workers (no-op where nothing listens)."""

    def notify_new_tasks_raw(self, cursor: Any) -> None:
        """The same on a DBAPI cursor, for the hot paths' raw transactions."""

    def is_unavailable(self, error: BaseException) -> bool:
        """True for errors worth retrying: busy beyond the timeout, connection lost."""

    def is_missing_schema(self, error: BaseException) -> bool:
        """True when the queue tables do not exist."""

    def new_task_waiter(self, engine: Engine) -> TaskWaiter:
        """An object an idle worker sleeps on until new work may be there."""

    def reset_id_sequence(self, conn: Connection, table: str, column: str) -> None:
        """After rows were inserted with explicit ids: the next generated id follows them."""


class TaskWaiter(Protocol):
    def wait(self, timeout: float) -> bool:
        """Sleep until new work may be there or the timeout passes. True when woken."""

    def close(self) -> None: ...


def backend_for(url: str) -> Backend:
    backend_name = make_url(url).get_backend_name()
    factory = _BACKENDS.get(backend_name)
    if factory is None:
        raise UnsupportedDatabase(
            f"unsupported database {backend_name!r}: use sqlite:/// or postgresql+psycopg://"
        )
    return factory()


def _sqlite() -> Backend:
    from queue_core.backends.sqlite import SqliteBackend

    return SqliteBackend()


def _postgresql() -> Backend:
    from queue_core.backends.postgresql import PostgresBackend

    return PostgresBackend()


# "postgres" is the scheme Heroku-style URLs use; normalise_url maps it to psycopg 3.
_BACKENDS: dict[str, Callable[[], Backend]] = {
    "sqlite": _sqlite,
    "postgresql": _postgresql,
    "postgres": _postgresql,
}
