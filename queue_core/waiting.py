"""Waiting for a task to finish (CONTRACT §9, issue 13 §5), for threads and for event loops.

A wait subscribes to its task first, then reads the task's status, then sleeps until its
listener wakes it (the task finished, or the listener went up or down) or its next re-read is
due: the fallback interval while the listener is live, the poll interval otherwise (SQLite, a
failed LISTEN). Subscribing before reading means a task that finishes between the read and
the sleep wakes the sleep; the event is cleared before each read for the same reason.

The async wait sleeps on an ``asyncio.Event`` that the listener sets through
``call_soon_threadsafe``: while it sleeps it holds no thread and no database connection.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

from queue_core.dialects.finished import FinishedWaiters


class _Schedule:
    """When the next re-read is due, and whether a finish went unannounced."""

    def __init__(
        self, waiters: FinishedWaiters, timeout: float | None, poll: float, fallback: float
    ) -> None:
        self.waiters = waiters
        self.deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        self.poll = poll
        self.fallback = fallback
        self.slept_live = False
        """The last sleep lasted the whole fallback interval of a live listener, unwoken."""

    def pause(self) -> float | None:
        """Seconds to sleep before the next read; None past the deadline."""
        pause = self.fallback if self.waiters.live else self.poll
        if self.deadline is not None:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                return None
            pause = min(pause, remaining)
        return pause

    def after_sleep(self, pause: float, woken: bool) -> None:
        self.slept_live = not woken and pause >= self.fallback and self.waiters.live

    def finished(self) -> None:
        if self.slept_live:
            self.waiters.missed()


def wait_for(
    waiters: FinishedWaiters,
    task_id: int,
    is_terminal: Callable[[], bool],
    *,
    timeout: float | None,
    poll_interval: float,
    fallback_interval: float,
) -> bool:
    """Block until ``is_terminal()`` (True) or the deadline passes (False)."""
    schedule = _Schedule(waiters, timeout, poll_interval, fallback_interval)
    woken = threading.Event()
    subscription = waiters.subscribe(task_id, woken.set)
    try:
        while True:
            woken.clear()
            if is_terminal():
                schedule.finished()
                return True
            pause = schedule.pause()
            if pause is None:
                return False
            schedule.after_sleep(pause, woken.wait(pause))
    finally:
        waiters.unsubscribe(subscription)


async def wait_for_async(
    waiters: FinishedWaiters,
    task_id: int,
    is_terminal: Callable[[], bool],
    *,
    timeout: float | None,
    poll_interval: float,
    fallback_interval: float,
) -> bool:
    """:func:`wait_for` on an event loop; each read runs briefly in a thread."""
    schedule = _Schedule(waiters, timeout, poll_interval, fallback_interval)
    loop = asyncio.get_running_loop()
    woken = asyncio.Event()
    subscription = waiters.subscribe(task_id, lambda: loop.call_soon_threadsafe(woken.set))
    try:
        while True:
            woken.clear()
            if await asyncio.to_thread(is_terminal):
                schedule.finished()
                return True
            pause = schedule.pause()
            if pause is None:
                return False
            try:
                await asyncio.wait_for(woken.wait(), pause)
                schedule.after_sleep(pause, True)
            except asyncio.TimeoutError:
                schedule.after_sleep(pause, False)
    finally:
        waiters.unsubscribe(subscription)


__all__ = ["wait_for", "wait_for_async"]
