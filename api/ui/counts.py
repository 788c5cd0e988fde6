"""The overview's counts per type and state: live states read every time, finished ones reused.

Queued and leased tasks are few and sit in partial indexes of their own, so they are
counted at every request. Completed, failed and cancelled tasks are the whole retained
history: counting them walks all of ix_task_queue_finished_status_type, so each server
process keeps that count and refreshes it in the background once it is older than
``UI_FINISHED_COUNTS_SECONDS``; the dashboard's own actions make the next page count again.
What another process changes shows within about that time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from queue_core.repositories import DashboardRepository
from queue_core.schemas import QueueStats
from queue_core.settings import UI_FINISHED_COUNTS_SECONDS
from queue_core.states import TERMINAL_STATES, TaskStatus

log = logging.getLogger("api.ui")

LIVE = [TaskStatus.QUEUED.value, TaskStatus.LEASED.value]
FINISHED = sorted(status.value for status in TERMINAL_STATES)


class OverviewCounts:
    def __init__(
        self,
        dashboard: DashboardRepository,
        max_age_seconds: float = UI_FINISHED_COUNTS_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.dashboard = dashboard
        self.max_age_seconds = max_age_seconds
        self.monotonic = monotonic
        self._lock = threading.Lock()
        self._finished: dict[str, dict[str, int]] | None = None
        self._counted_at = 0.0
        self._refresher: threading.Thread | None = None

    def invalidate(self) -> None:
        """The next page counts the finished tasks again before it renders (after the
        dashboard's own cancel or retry, so the operator sees the result of the action)."""
        with self._lock:
            self._finished = None

    def _finished_counts(self) -> dict[str, dict[str, int]]:
        """The cached finished counts. Past their age they are refreshed in a background
        thread while pages go on showing the previous ones, so no page waits for the scan;
        only the first page of a process (or the one after an action) counts in line."""
        with self._lock:
            cached = self._finished
            stale = self.monotonic() - self._counted_at > self.max_age_seconds
            if cached is not None and stale and self._refresher is None:
                self._refresher = threading.Thread(
                    target=self._refresh, name="ui-finished-counts", daemon=True
                )
                self._refresher.start()
        if cached is not None:
            return cached
        self._refresh()
        with self._lock:
            return self._finished or {}

    def _refresh(self) -> None:
        try:
            counts = self.dashboard.counts(FINISHED)
        except Exception:  # the page keeps the last counts; tried again at the next page
            log.warning("counting finished tasks failed", exc_info=True)
            with self._lock:
                self._refresher = None
            return
        with self._lock:
            self._finished = counts
            self._counted_at = self.monotonic()
            self._refresher = None

    def stats(self, workers_active: int) -> QueueStats:
        finished = self._finished_counts()
        live = self.dashboard.counts(LIVE)
        by_type: dict[str, dict[str, int]] = {}
        for source in (finished, live):
            for task_type, counts in source.items():
                by_type.setdefault(task_type, {}).update(counts)
        by_status = dict.fromkeys((status.value for status in TaskStatus), 0)
        for counts in by_type.values():
            for status, count in counts.items():
                by_status[status] += count
        return QueueStats(
            total_tasks=sum(by_status.values()),
            queued_tasks=by_status["queued"],
            leased_tasks=by_status["leased"],
            processing_tasks=by_status["leased"],
            completed_tasks=by_status["completed"],
            failed_tasks=by_status["failed"],
            cancelled_tasks=by_status["cancelled"],
            oldest_queued_age_seconds=self.dashboard.oldest_due_age_seconds(),
            by_type=by_type,
            workers_active=workers_active,
        )
