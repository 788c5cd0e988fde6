"""Who waits for which task to finish: the registry behind ``Dialect.finished_listener``.

A wait (``TaskRepository.wait``, ``wait_async``) subscribes to its task id with a callback that
wakes it, reads the task's status, and sleeps until woken or until its next re-read is due.
A listener calls the callbacks of the ids it hears have finished. The registry is shared by
every wait of a Database, so a thousand long polls cost one listener, not a thousand.

:class:`FinishedWaiters` alone hears nothing (``live`` is False): waits then re-read at their
poll interval (SQLite). :mod:`queue_core.dialects.pg_listener` feeds it from LISTEN.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

log = logging.getLogger("prismq.queue.wait")


class Subscription:
    """One wait's interest in one task."""

    __slots__ = ("task_id", "wake")

    def __init__(self, task_id: int, wake: Callable[[], object]) -> None:
        self.task_id = task_id
        self.wake = wake


class FinishedWaiters:
    """The waits of one Database, by task id. Thread-safe; callbacks run on the caller of
    :meth:`finished` and must not block (set an Event, or ``loop.call_soon_threadsafe``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_task: dict[int, set[Subscription]] = {}

    @property
    def live(self) -> bool:
        """True while finished tasks are announced: a wait may then sleep until its fallback
        re-read instead of polling."""
        return False

    def subscribe(self, task_id: int, wake: Callable[[], object]) -> Subscription:
        subscription = Subscription(task_id, wake)
        with self._lock:
            self._by_task.setdefault(task_id, set()).add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            waiting = self._by_task.get(subscription.task_id)
            if waiting is not None:
                waiting.discard(subscription)
                if not waiting:
                    del self._by_task[subscription.task_id]

    def missed(self) -> None:
        """A wait found its task finished on a fallback re-read, unannounced."""

    def close(self) -> None:
        """Stop listening; waits that remain fall back to polling."""

    @property
    def waiting(self) -> int:
        """How many tasks are waited for."""
        with self._lock:
            return len(self._by_task)

    def finished(self, task_ids: Iterable[int] | None) -> None:
        """Wake the waits of ``task_ids``; None wakes every wait (re-check everything)."""
        with self._lock:
            if task_ids is None:
                woken = [s for group in self._by_task.values() for s in group]
            else:
                woken = [s for i in task_ids for s in self._by_task.get(i, ())]
        for subscription in woken:
            try:
                subscription.wake()
            except Exception:  # a wait whose event loop closed: its wait is over anyway
                log.debug("waking a wait for task %s failed", subscription.task_id, exc_info=True)


def finished_payload(task_ids: Iterable[int], max_bytes: int) -> str:
    """The ids as "1,2,3", or "" (re-check everything) when that would pass ``max_bytes``."""
    payload = ",".join(str(task_id) for task_id in sorted(set(task_ids)))
    return payload if len(payload) <= max_bytes else ""


def parse_payload(payload: str) -> list[int] | None:
    """The ids of a notification's payload; None (everything) for an empty or odd one."""
    try:
        return [int(part) for part in payload.split(",")] if payload else None
    except ValueError:
        return None


__all__ = ["FinishedWaiters", "Subscription", "finished_payload", "parse_payload"]
