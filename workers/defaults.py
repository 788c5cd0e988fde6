"""Defaults of the worker runtime that the core settings do not hold.

The shared ones (lease length, renew fraction, poll interval, concurrency, shutdown grace,
sweep interval) live in :mod:`queue_core.settings`; these only matter inside a worker.
"""

from __future__ import annotations

import logging

# A database that stopped answering is retried after 0.05 s, then twice as long each time, up
# to 5 s: a blip costs little, an outage does not spin.
DB_RETRY_MIN_SECONDS = 0.05
DB_RETRY_MAX_SECONDS = 5.0

# When the worker stops, outcomes that the database would not take are retried this long
# before the worker gives up on them (their leases then expire and the tasks run again).
FINAL_RECORD_SECONDS = 5.0

# error_message keeps the start of a long error text; the full traceback goes to the log.
ERROR_MESSAGE_MAX_CHARS = 4000

# Handler log records at this level and above also land in task_logs.
TASK_LOG_LEVEL_DEFAULT = logging.INFO
# Records waiting for the database are capped; past it the oldest are dropped (and counted).
TASK_LOG_BUFFER_MAX = 10_000

METRICS_HOST_DEFAULT = "127.0.0.1"

# Runtime loggers: "prismq.queue.worker" for the runtime, "prismq.queue.task" for handlers.
WORKER_LOGGER = "prismq.queue.worker"
TASK_LOGGER = "prismq.queue.task"

# After a second stop signal, outcomes and releases get this long before the worker exits.
IMMEDIATE_RECORD_SECONDS = 1.0

# While the database stays unavailable the worker logs the first failure and every this
# many failures after it (the back-off caps at DB_RETRY_MAX_SECONDS: one line per ~50 s).
DB_FAILURE_LOG_EVERY = 10

# A finished task's outcome is written with the next claim; when no claim comes sooner (every
# slot busy, or prefetched tasks still to run) it is written on its own after at most this
# long. See docs/workers.md for the measurement behind it.
FLUSH_INTERVAL_SECONDS = 0.02

# Prefetch: claim this many tasks beyond the free slots in one round (--prefetch; 0 = off).
# Chosen by measurement (docs/workers.md: CPU per task 340 us at 0, ~105 us at 10, no better
# at 20 or 50). Only types whose average handler time is known and short are prefetched, as
# many as fit PREFETCH_WAIT_BUDGET_SECONDS per slot of waiting: minutes-long tasks never are.
PREFETCH_DEFAULT = 10
PREFETCH_WAIT_BUDGET_SECONDS = 0.05
# Weight of the newest handler duration in a type's moving average.
DURATION_EWMA_WEIGHT = 0.2
# A worker serving short and long (or not yet seen) types prefetches the short ones in a
# claim of its own; when that finds nothing, it is tried again only after this long.
PREFETCH_RECHECK_SECONDS = 1.0
