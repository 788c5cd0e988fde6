"""weighted_random: each due task is chosen with probability proportional to 1/priority.

The method is an exponential race with stored keys, so a claim is one index seek whatever the
size of the queue.

* When a task becomes claimable it gets a key ``wr_key = V + priority * E``, where ``E`` is a
  fresh Exp(1) draw and ``V`` is the virtual clock: the key of the last task claimed. So the
  task's key lies above ``V`` by an exponential with rate ``w = 1/priority``.
* A claim takes the task with the smallest key and moves ``V`` to it.
* Why that is exact: for independent exponentials with rates ``w_i``, the smallest is number
  ``i`` with probability ``w_i / sum(w)``. After a claim at key ``m``, every other key is known
  only to exceed ``m``; by the memoryless property its excess over ``m`` is again Exp(w_i),
  independent of the rest. New tasks start at the same ``V = m``. So every claim is a fresh
  race among the tasks due at that moment, and a priority-10 task wins ten times as often as
  a priority-100 one. A batch claim of ``n`` takes the ``n`` smallest keys: weighted sampling
  without replacement, exact in the same way.
* Nothing starves: a low-priority task's key is finite and ``V`` only grows, so every task
  is eventually the smallest.
* Delayed, backed-off, released and retried tasks have no key (NULL) until they are due; the
  claim first gives keys to such tasks that have come due ("promotion", an index range scan
  over ``ix_task_queue_unkeyed``), so they join the race at the moment they become due.

Exactness holds among the tasks a claim can see. Type and capability filters restrict a
worker to a subset; within it the choice stays proportional to 1/priority, but keys drawn
against one worker's clock position are only approximately fresh for another's subset.

On PostgreSQL the clock row is read FOR UPDATE, which serialises weighted_random claims with
each other (not with other strategies, nor with enqueues).
"""

from __future__ import annotations

import random
from datetime import datetime
from types import ModuleType
from typing import Any

from queue_core.claims import ClaimedTask, ClaimRequest
from queue_core.dialects.claiming import SqlClaimer
from queue_core.states import SchedulingStrategy

PROMOTE_BATCH = 1000


def race_weight(priority: int, rng: random.Random) -> float:
    """How far above the virtual clock a task's key lies: priority * Exp(1)."""
    return priority * rng.expovariate(1.0)


class WeightedRandomClaimer(SqlClaimer):
    def __init__(self, sql: ModuleType, rng: random.Random | None = None) -> None:
        super().__init__(sql, SchedulingStrategy.WEIGHTED_RANDOM)
        self.rng = rng or random.Random()
        self._promote = self.sql.dbapi_sql(self.sql.PROMOTE_SELECT_SQL)
        self._set_key = self.sql.dbapi_sql(self.sql.SET_KEY_SQL)
        self._read_clock = self.sql.dbapi_sql(self.sql.READ_CLOCK_SQL)
        self._advance_clock = self.sql.dbapi_sql(self.sql.ADVANCE_CLOCK_SQL)

    def claim(self, cursor: Any, request: ClaimRequest, now: datetime) -> list[ClaimedTask]:
        if request.limit < 1 or not request.types:
            return []
        cursor.execute(self._read_clock)
        row = cursor.fetchone()
        vtime = float(row[0]) if row is not None else 0.0
        self.promote_due(cursor, now, vtime)
        claimed = super().claim(cursor, request, now)
        keys = [task.wr_key for task in claimed if task.wr_key is not None]
        if keys:
            cursor.execute(self._advance_clock, {"vtime": max(keys)})
        return claimed

    def promote_due(self, cursor: Any, now: datetime, vtime: float) -> int:
        """Give race keys to tasks that have come due without one."""
        cursor.execute(self._promote, {"now": self.sql.bind_time(now), "limit": PROMOTE_BATCH})
        rows = cursor.fetchall()
        if rows:
            cursor.executemany(
                self._set_key,
                [
                    {"id": task_id, "wr_key": vtime + race_weight(priority, self.rng)}
                    for task_id, priority in rows
                ],
            )
        return len(rows)
