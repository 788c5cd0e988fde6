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
