"""Wake the run loop when new work may be there: the backend's waiter, in a thread of its own.

The waiter is LISTEN/NOTIFY on PostgreSQL, and on SQLite ``PRAGMA data_version`` polling plus
an in-process wake-up when this process enqueues. Its ``wait`` blocks, so it runs here rather
than in the run loop, which waits on one queue for every kind of event instead.
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
