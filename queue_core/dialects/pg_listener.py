"""One LISTEN connection per Database that wakes every wait for a finished task.

Every transaction that ends tasks (completed, failed, cancelled) sends one
``pg_notify(PG_FINISHED_CHANNEL, '<ids>')`` (``PostgresDialect.notify_finished_raw``) while
some session LISTENs for it (:class:`ListenerPresence`: a NOTIFY serialises the commits of
every notifying transaction on the server, which a drain nobody waits on should not pay). A
thread of its own LISTENs on one connection and calls the waits of the ids it hears
(:class:`queue_core.dialects.finished.FinishedWaiters`): a thousand concurrent long polls of
the API hold that one connection and one thread, and no thread of a pool.

The thread starts with the first wait and ends, closing its connection, once no wait has
needed it for ``PG_LISTENER_IDLE_SECONDS``. When LISTEN fails (server gone, refused) the
listener is not ``live``: waits re-read at their poll interval until it reconnects. Each
(re)connection wakes every wait, because notifications sent while nobody listened are lost.

Behind PgBouncer in transaction mode LISTEN succeeds but hears nothing reliably. A wait that
finds its task finished on a fallback re-read without having heard of it calls
:meth:`PgFinishedListener.missed`; the listener then stops counting as live (waits poll again)
until it hears a notification.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import URL

from queue_core.dialects.finished import FinishedWaiters, Subscription, parse_payload
from queue_core.settings import (
    PG_FINISHED_CHANNEL,
    PG_LISTEN_KEEPALIVES,
    PG_LISTENER_APPLICATION_NAME,
    PG_LISTENER_IDLE_SECONDS,
    PG_LISTENER_LOOKUP_SECONDS,
    PG_LISTENER_RETRY_SECONDS,
    PG_LISTENER_WARMUP_SECONDS,
)

log = logging.getLogger("prismq.queue.wait")

TICK_SECONDS = 1.0
"""How often the thread looks up from the socket: to stop, or to end when idle."""


def listen_connection(
    url: URL, channel: str, application_name: str | None = PG_LISTENER_APPLICATION_NAME
) -> Any:
    """A psycopg connection in autocommit that LISTENs on ``channel``, with TCP keepalives
    (``PG_LISTEN_KEEPALIVES``, unless the URL sets them: a silent dead connection would hear
    nothing forever), named ``application_name`` (None: as the URL says) so that writers see
    it (:class:`ListenerPresence`)."""
    import psycopg

    params: dict[str, Any] = {
        "host": url.host,
        "port": url.port,
        "user": url.username,
        "password": url.password,
        "dbname": url.database,
        **PG_LISTEN_KEEPALIVES,
    }
    params.update(url.query)  # e.g. options=-csearch_path=...
    if application_name is not None:
        params["application_name"] = application_name
    conn = psycopg.connect(autocommit=True, **{k: v for k, v in params.items() if v is not None})
    try:
        conn.execute(f"LISTEN {channel}")
    except BaseException:
        conn.close()
        raise
    return conn


# application_name is one of the columns of pg_stat_activity every role may read.
LISTENER_LOOKUP_SQL = (
    "SELECT EXISTS (SELECT 1 FROM pg_stat_activity"
    " WHERE application_name = %s AND datname = current_database())"
)


class ListenerPresence:
    """Whether any session of the database LISTENs for finished tasks: a writer notifies only
    then. Looked up on the writer's own cursor at most once per ``lookup_seconds``.

    A listener that connects just after a writer looked is missed by that writer until its
    next lookup: waits count a new listener live only after PG_LISTENER_WARMUP_SECONDS and
    poll meanwhile, so that a task ended unannounced is still found at the poll interval.
    """

    def __init__(
        self,
        application_name: str = PG_LISTENER_APPLICATION_NAME,
        lookup_seconds: float = PG_LISTENER_LOOKUP_SECONDS,
    ) -> None:
        self._application_name = application_name
        self._lookup_seconds = lookup_seconds
        self._looked_at = -lookup_seconds
        self._present = True
        self.lookups = 0

    def someone_listens(self, cursor: Any) -> bool:
        now = time.monotonic()
        if now - self._looked_at >= self._lookup_seconds:
            cursor.execute(LISTENER_LOOKUP_SQL, (self._application_name,))
            self._present = bool(cursor.fetchone()[0])
            self._looked_at = now
            self.lookups += 1
        return self._present


class PgFinishedListener(FinishedWaiters):
    def __init__(
        self,
        url: URL,
        *,
        channel: str = PG_FINISHED_CHANNEL,
        idle_seconds: float = PG_LISTENER_IDLE_SECONDS,
        retry_seconds: float = PG_LISTENER_RETRY_SECONDS,
        warmup_seconds: float = PG_LISTENER_WARMUP_SECONDS,
    ) -> None:
        super().__init__()
        self._warmup_seconds = warmup_seconds
        self._live_from = 0.0
        self._url = url
        self._channel = channel
        self._idle_seconds = idle_seconds
        self._retry_seconds = retry_seconds
        self._thread: threading.Thread | None = None
        self._thread_lock = threading.Lock()
        self._stop = threading.Event()
        self._listening = False
        self._deaf = False
        self.connections = 0
        """LISTEN connections opened so far (for tests and diagnostics)."""

    @property
    def live(self) -> bool:
        return self._listening and not self._deaf and time.monotonic() >= self._live_from

    def subscribe(self, task_id: int, wake: Callable[[], object]) -> Subscription:
        subscription = super().subscribe(task_id, wake)
        with self._thread_lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(
                    target=self._run, name="prismq-wait-listener", daemon=True
                )
                self._thread.start()
        return subscription

    def missed(self) -> None:
        if self._listening and not self._deaf:
            log.warning(
                "LISTEN %s heard nothing of a finished task (PgBouncer in transaction mode?);"
                " waits poll until it hears again",
                self._channel,
            )
            self._deaf = True

    def close(self) -> None:
        # Not joined: the thread sees the flag within TICK_SECONDS and closes its connection;
        # a CLI `tasks wait` should not linger that long after its answer.
        self._stop.set()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                conn = self._connect()
                if conn is None:
                    if self._stop.wait(self._retry_seconds) or self._done_if_idle(None):
                        return
                    continue
                try:
                    if self._listen(conn):
                        return
                finally:
                    self._set_listening(False)
                    conn.close()
        finally:
            with self._thread_lock:
                if self._thread is threading.current_thread():
                    self._thread = None

    def _connect(self) -> Any:
        try:
            conn = listen_connection(self._url, self._channel)
        except Exception as exc:  # noqa: BLE001 - any failure means: waits poll instead
            log.warning("LISTEN %s failed (%s); waits poll until it works", self._channel, exc)
            return None
        self.connections += 1
        self._set_listening(True)
        return conn

    def _listen(self, conn: Any) -> bool:
        """Hear notifications until stopped or idle (True: the thread is done) or until the
        connection fails (False: reconnect)."""
        idle_since: float | None = None
        try:
            while not self._stop.is_set():
                for note in conn.notifies(timeout=TICK_SECONDS):
                    self._deaf = False
                    self.finished(parse_payload(note.payload))
                if self.waiting:
                    idle_since = None
                elif idle_since is None:
                    idle_since = time.monotonic()
                elif self._done_if_idle(idle_since):
                    return True
        except Exception as exc:  # noqa: BLE001 - the connection is gone: reconnect
            log.warning("LISTEN %s lost (%s); reconnecting", self._channel, exc)
            return self._stop.wait(self._retry_seconds)
        return True

    def _done_if_idle(self, idle_since: float | None) -> bool:
        """End the thread when no wait needs it (checked under the lock subscribe starts
        threads under, so a new wait either sees this thread or starts the next one)."""
        with self._thread_lock:
            idle = idle_since is None or time.monotonic() - idle_since >= self._idle_seconds
            if self.waiting or not idle:
                return False
            self._thread = None
            return True

    def _set_listening(self, listening: bool) -> None:
        self._live_from = time.monotonic() + self._warmup_seconds
        self._listening = listening
        self._deaf = False
        # Listening from now on, or not any more: either way notifications may have been
        # missed, so every wait re-reads its task (and learns how long it may sleep next).
        self.finished(None)


__all__ = ["ListenerPresence", "PgFinishedListener", "listen_connection"]
