"""The overview's counts per type and state: live states read every time, finished ones reused.

Queued and leased tasks are few and sit in their own ranges of ``ix_task_queue_status_type``,
so they are counted at every request. Completed, failed and cancelled tasks are the whole
retained history: counting them reads every entry of that index (about 90 ms of CPU at 10^6
tasks on SQLite), so each server process keeps that count for ``UI_FINISHED_COUNTS_SECONDS``
and the dashboard's own actions drop it. What another process changes shows within that time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from queue_core.repositories import DashboardRepository
from queue_core.schemas import QueueStats
from queue_core.settings import UI_FINISHED_COUNTS_SECONDS
from queue_core.states import TERMINAL_STATES, TaskStatus

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

    def invalidate(self) -> None:
        with self._lock:
            self._finished = None

    def _finished_counts(self) -> dict[str, dict[str, int]]:
        with self._lock:
            now = self.monotonic()
            if self._finished is None or now - self._counted_at > self.max_age_seconds:
                self._finished = self.dashboard.counts(FINISHED)
                self._counted_at = now
            return self._finished

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
