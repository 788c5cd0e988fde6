"""The one seam between SQLite and PostgreSQL: a :class:`Dialect` per backend.

Everything that differs between the two databases lives behind a Dialect: how the engine is
built and tuned, how a write transaction starts and which connection it runs on, the claim
statement of each strategy, enqueue, how new work is announced and waited for, how driver
errors are classified, and the maintenance operations. Each dialect keeps its SQL in a named
module of its own (``sqlite_sql.py``, ``postgresql_sql.py``), commented with its reasons.

Nothing outside this package asks which database it runs on (``tests/test_dialect_seam.py``
checks it): it calls a Dialect method instead. This package never imports
:mod:`queue_core.database` (which owns an engine and its Dialect); its methods take the engine
or a DBAPI cursor they work on.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from sqlalchemy import Connection, Engine
from sqlalchemy.engine import make_url

from queue_core.errors import UnsupportedDatabase
from queue_core.settings import QueueSettings
from queue_core.states import SchedulingStrategy

if TYPE_CHECKING:
    from queue_core.dialects.claiming import TaskClaimer
    from queue_core.dialects.connections import RawWriter
    from queue_core.dialects.finished import FinishedWaiters

READ_ONLY_OPTION = "prismq_read_only"
"""Execution option: a connection carrying it begins a read transaction (deferred on SQLite)."""

JOB_CHECKPOINT = "checkpoint"
JOB_OPTIMIZE = "optimize"


class GuardedRow(NamedTuple):
    """One row of a guarded batch: the lease to match, and the values its kind needs."""

    task_id: int
    worker_id: str | None
    lease_token: int
    message: str | None = None
    """error_message: the error (retry, fail), the reason (cancel, recovery)."""
    result_json: str | None = None
    """The result as JSON text (complete, cancel)."""
    at: datetime | None = None
    """When the retry is due (retry)."""


class GuardedResult(NamedTuple):
    """A row a guarded statement matched, as it is now."""

    task_id: int
    status: str
    cancel_requested: bool
    attempts: int
    max_attempts: int
    has_dependents: bool = False
    """Some task depends on this one: its end updates them (queue_core/dependencies.py)."""


class LogRow(NamedTuple):
    task_id: int
    at_utc: datetime
    level: str
    message: str
    details: Mapping[str, Any] | None


class TaskWaiter(Protocol):
    """What an idle worker sleeps on until new work may be there."""

    in_loop: bool
    """True when ``wait`` is cheap enough to call on the worker's own loop (SQLite polls
    ``data_version``); False when it blocks on a socket (LISTEN) and belongs in a thread."""

    @property
    def listening(self) -> bool:
        """True while every announcement of new work reaches ``wait`` (SQLite: while the
        ``data_version`` connection is open; PostgreSQL: while LISTEN is up and a test
        notification came through, which PgBouncer in transaction mode never lets happen).
        Only then may an idle worker sleep past its poll interval."""

    def wait(self, timeout: float) -> bool:
        """Sleep until new work may be there, :meth:`wake` is called, or the timeout passes.
        True when woken (also right after it starts listening again: what was announced
        meanwhile was missed)."""

    def wake(self) -> None:
        """End the current (or the next) ``wait`` early; any thread may call it."""

    def close(self) -> None: ...


class Dialect(Protocol):
    name: str
    """For messages and logs. Never compared outside this package: add a method instead."""

    @property
    def sql(self) -> ModuleType:
        """The dialect's statements (``sqlite_sql`` or ``postgresql_sql``)."""

    # --- engine and connections ---

    def create_engine(self, url: str, settings: QueueSettings) -> Engine:
        """Build and tune the engine: pooling, session settings, transaction start."""

    def raw_writer(self, engine: Engine) -> RawWriter:
        """The hot path's write transactions on DBAPI connections kept for the engine."""

    def is_unavailable(self, error: BaseException) -> bool:
        """True for errors worth retrying: busy beyond the timeout, connection lost."""

    def unavailable_reason(self, error: BaseException) -> str:
        """The short reason after "database unavailable: " for an error ``is_unavailable``
        accepts: "disk full" for a full disk, else the driver's first line."""

    def is_missing_schema(self, error: BaseException) -> bool:
        """True when the queue tables do not exist."""

    # --- queue operations ---

    def claimer(self, strategy: SchedulingStrategy, rng: random.Random | None) -> TaskClaimer:
        """The claim of ``strategy`` (one statement; weighted_random also keeps its clock)."""

    def enqueue_logged(
        self,
        writer: RawWriter,
        params: dict[str, Any],
        log: LogRow | None,
        notify: bool,
    ) -> int | None:
        """Insert one task, its "enqueued" log row (``log``, whose task_id is filled in; None
        for none) and, when ``notify``, the wake-up of sleeping workers, atomically. Returns
        the new id, or None when the idempotency key exists already (nothing written)."""

    def set_state_if_leased_many(
        self,
        cursor: Any,
        kind: str,
        rows: Sequence[GuardedRow],
        now: datetime,
        lease_until: datetime | None = None,
    ) -> list[GuardedResult]:
        """One guarded statement for the whole batch of one outcome ``kind`` (complete, retry,
        fail, release, cancel, expire, worker_lost, renew; see guarded_sql.py): only rows still
        leased by the row's worker under its token change. Returns the rows that matched."""

    def insert_logs(self, cursor: Any, rows: Sequence[LogRow]) -> None:
        """Every task_logs row of the caller's transaction in one INSERT."""

    def notify_new_tasks(self, conn: Connection) -> None:
        """Announce committed work to sleeping workers (no-op where nothing listens)."""

    def notify_new_tasks_raw(self, cursor: Any) -> None:
        """The same on a DBAPI cursor, for the hot paths' raw transactions."""

    def new_task_waiter(self, engine: Engine) -> TaskWaiter:
        """An object an idle worker sleeps on until new work may be there."""

    def notify_finished_raw(self, cursor: Any, task_ids: Collection[int]) -> None:
        """Announce, at commit, that ``task_ids`` reached completed, failed or cancelled in
        the cursor's transaction (nothing when empty; a no-op where nothing listens). Called
        once per transaction, with every id it ended."""

    def finished_listener(self, engine: Engine) -> FinishedWaiters:
        """The registry of waits for finished tasks, fed by whatever this database can
        announce them with (PostgreSQL: one LISTEN connection; SQLite: nothing, so waits
        poll). A Database keeps one and shares it between all its waits."""

    def missing_database(self, url: str) -> str | None:
        """Where the database would be when it does not exist yet (SQLite: no file), else None.

        Commands that only read check it first, so that they never create one.
        """

    def reset_id_sequence(self, conn: Connection, table: str, column: str) -> None:
        """After rows were inserted with explicit ids: the next generated id follows them."""

    # --- maintenance ---

    def periodic_maintenance(self) -> frozenset[str]:
        """The scheduled jobs this database needs besides sweep and purge
        (``JOB_CHECKPOINT``, ``JOB_OPTIMIZE``)."""

    def database_file(self, engine: Engine) -> Path | None:
        """The database file, or None for a server database (no file to back up)."""

    def analyze(self, engine: Engine) -> str:
        """Refresh planner statistics of the queue tables; a one-line summary."""

    def optimize(self, engine: Engine) -> str:
        """The cheap statistics refresh the scheduler runs; a one-line summary."""

    def vacuum(self, engine: Engine) -> None:
        """Give the space of deleted rows back."""

    def storage_bytes(self, engine: Engine) -> int:
        """The queue's size on disk (SQLite: file and WAL; PostgreSQL: the queue tables)."""

    def storage_lines(self, engine: Engine) -> list[str]:
        """The sizes ``maintenance status`` prints, one line each."""

    def wal_bytes(self, engine: Engine) -> int:
        """The size of the queue's own WAL file (0 where the server owns its WAL)."""

    def wal_checkpoint(self, engine: Engine, mode: str) -> tuple[bool, int, int]:
        """Checkpoint the WAL (``mode``: passive, full, restart, truncate): (busy, frames in
        the log, frames checkpointed). Raises NotSupportedOnBackend where the server
        checkpoints its own WAL."""


DISK_FULL = "disk full"
"""What ``unavailable_reason`` says of a full disk (SQLITE_FULL, PostgreSQL 53100)."""


def first_line(error: BaseException) -> str:
    """The first line of a driver error's message (SQLAlchemy's wrapper unwrapped)."""
    orig = getattr(error, "orig", None) or error
    text = str(orig).strip()
    return text.splitlines()[0] if text else type(orig).__name__


def dialect_for(url: str) -> Dialect:
    dialect_name = make_url(url).get_backend_name()
    factory = _DIALECTS.get(dialect_name)
    if factory is None:
        raise UnsupportedDatabase(
            f"unsupported database {dialect_name!r}: use sqlite:/// or postgresql+psycopg://"
        )
    return factory()


def _sqlite() -> Dialect:
    from queue_core.dialects.sqlite import SqliteDialect

    return SqliteDialect()


def _postgresql() -> Dialect:
    from queue_core.dialects.postgresql import PostgresDialect

    return PostgresDialect()


# "postgres" is the scheme Heroku-style URLs use; normalise_url maps it to psycopg 3.
_DIALECTS: dict[str, Callable[[], Dialect]] = {
    "sqlite": _sqlite,
    "postgresql": _postgresql,
    "postgres": _postgresql,
}

__all__ = [
    "DISK_FULL",
    "JOB_CHECKPOINT",
    "JOB_OPTIMIZE",
    "READ_ONLY_OPTION",
    "Dialect",
    "GuardedResult",
    "GuardedRow",
    "LogRow",
    "TaskWaiter",
    "dialect_for",
    "first_line",
]
