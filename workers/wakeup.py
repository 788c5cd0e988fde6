"""Where the fetcher waits for new work, and what wakes it.

The backend's waiter is LISTEN/NOTIFY on PostgreSQL, and on SQLite ``PRAGMA data_version``
polling plus an in-process wake-up when this process enqueues. A waiter that can be woken
(``wake``) is waited on directly by the fetching slot; one that cannot (a blocking LISTEN) runs
in a :class:`NewTaskWatcher` thread that sets an event instead. While the waiter is
``listening`` (every announcement reaches it), an idle fetcher may sleep until the next task
is due (workers/fetcher.py); otherwise it polls every poll interval.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from queue_core.database import Database
from queue_core.dialects import TaskWaiter
from workers.defaults import WORKER_LOGGER

log = logging.getLogger(WORKER_LOGGER)


class NewTaskWatcher:
    def __init__(self, db: Database, poll_interval: float, on_wake: Callable[[], None]) -> None:
        self._db = db
        self._poll_interval = poll_interval
        self._on_wake = on_wake
        self._stopped = threading.Event()
        self._waiter: TaskWaiter | None = None
        self._thread = threading.Thread(target=self._watch, name="prismq-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def listening(self) -> bool:
        waiter = self._waiter
        return waiter is not None and waiter.listening

    def _watch(self) -> None:
        try:
            waiter = self._db.new_task_waiter()
        except Exception:
            log.warning("cannot watch for new tasks; polling only", exc_info=True)
            return
        self._waiter = waiter
        try:
            while not self._stopped.is_set():
                try:
                    woken = waiter.wait(self._poll_interval)
                except Exception:
                    log.debug("new-task waiter failed", exc_info=True)
                    self._stopped.wait(self._poll_interval)
                    continue
                if woken and not self._stopped.is_set():
                    self._on_wake()
        finally:
            waiter.close()

    def stop(self, timeout: float | None = None) -> None:
        self._stopped.set()
        if self._waiter is not None:
            self._waiter.wake()
        if self._thread.is_alive():
            self._thread.join(timeout if timeout is not None else self._poll_interval + 1.0)


class WorkSignal:
    """``wait(timeout)`` until new work may be there or :meth:`wake` is called."""

    def __init__(self, db: Database, poll_interval: float) -> None:
        self._db = db
        self._poll_interval = poll_interval
        self._event = threading.Event()
        self._waiter: TaskWaiter | None = None
        self._watcher: NewTaskWatcher | None = None

    def start(self) -> None:
        waiter = self._db.new_task_waiter()
        if waiter.in_loop:
            self._waiter = waiter
        else:
            waiter.close()
            self._watcher = NewTaskWatcher(self._db, self._poll_interval, self.wake)
            self._watcher.start()

    @property
    def listening(self) -> bool:
        """Every announcement of new work wakes :meth:`wait` (``TaskWaiter.listening``)."""
        if self._waiter is not None:
            return self._waiter.listening
        return self._watcher is not None and self._watcher.listening

    def wait(self, timeout: float) -> None:
        waiter = self._waiter
        if waiter is None:
            if self._event.wait(max(0.0, timeout)):
                self._event.clear()
            return
        try:
            waiter.wait(max(0.0, timeout))
        except Exception:
            log.debug("new-task waiter failed", exc_info=True)
            self._event.wait(max(0.0, timeout))
            self._event.clear()

    def wake(self) -> None:
        """Safe from any thread (not from a signal handler)."""
        self._event.set()
        waiter = self._waiter
        if waiter is not None:
            waiter.wake()

    def close(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
        if self._waiter is not None:
            self._waiter.close()
            self._waiter = None
