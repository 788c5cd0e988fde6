"""The guarded transitions' SET clauses: what each outcome kind does to a leased row.

Both dialects wrap these in one statement per kind for a whole batch (``postgresql_sql`` joins
``unnest`` of arrays, ``sqlite_sql`` joins ``json_each`` of one JSON array): the target row is
``q``, the batch row ``b`` with columns ``b_id, b_worker, b_token, b_message, b_result, b_at``.
Every statement matches only a row that is still ``leased`` by ``b_worker`` under
``b_token``; an id that does not come back was lost (expired and recovered, re-claimed,
cancelled, ...) and nothing of it changed. In an UPDATE every right-hand side reads the row as
it was before, so the CASE branches below all see the old ``status``, ``attempts``, ... .

Cancellation (CONTRACT §4): once ``cancel_requested`` is set on a leased task, whatever the
attempt ends with (return, exception, release, lease expiry) the task ends ``cancelled``; a
returned value is kept as ``result``. So every kind checks ``q.cancel_requested`` first.

``:now`` is the transaction's time; ``:cancelled_message`` the error_message of a task that
ends cancelled because its cancellation was requested.
"""

from __future__ import annotations

# The handler returned: completed (its result kept), or cancelled if that was asked meanwhile.
# A completed task carries no error_message: earlier attempts' errors stay in task_logs.
COMPLETE = """
    status = CASE WHEN q.cancel_requested THEN 'cancelled' ELSE 'completed' END,
    result = {result},
    error_message = CASE WHEN q.cancel_requested THEN :cancelled_message END,
    finished_at_utc = :now,
    lease_until_utc = NULL,
    updated_at_utc = :now"""

# A retryable error: back to queued at b_at (the back-off). Attempts are counted at claim, so
# a row with none left fails instead: the guard against a caller that retries too often.
_GIVES_UP = "(q.cancel_requested OR q.attempts >= q.max_attempts)"
RETRY = f"""
    status = CASE WHEN q.cancel_requested THEN 'cancelled'
                  WHEN q.attempts >= q.max_attempts THEN 'failed'
                  ELSE 'queued' END,
    run_after_utc = CASE WHEN {_GIVES_UP} THEN q.run_after_utc ELSE b.b_at END,
    finished_at_utc = CASE WHEN {_GIVES_UP} THEN :now END,
    locked_by = CASE WHEN {_GIVES_UP} THEN q.locked_by END,
    error_message = CASE WHEN q.cancel_requested THEN :cancelled_message ELSE b.b_message END,
    lease_until_utc = NULL,
    wr_key = NULL,
    updated_at_utc = :now"""

# A permanent error or no attempts left: the dead-letter state. locked_by keeps the last holder.
FAIL = """
    status = CASE WHEN q.cancel_requested THEN 'cancelled' ELSE 'failed' END,
    error_message = CASE WHEN q.cancel_requested THEN :cancelled_message ELSE b.b_message END,
    finished_at_utc = :now,
    lease_until_utc = NULL,
    wr_key = NULL,
    updated_at_utc = :now"""

# Given back unfinished (graceful shutdown): queued at once, and the attempt is not counted.
RELEASE = """
    status = CASE WHEN q.cancel_requested THEN 'cancelled' ELSE 'queued' END,
    attempts = q.attempts - 1,
    run_after_utc = CASE WHEN q.cancel_requested THEN q.run_after_utc ELSE :now END,
    finished_at_utc = CASE WHEN q.cancel_requested THEN :now END,
    locked_by = CASE WHEN q.cancel_requested THEN q.locked_by END,
    error_message = CASE WHEN q.cancel_requested THEN :cancelled_message
                         ELSE q.error_message END,
    lease_until_utc = NULL,
    wr_key = NULL,
    updated_at_utc = :now"""

# The worker saw the cancellation and stopped the handler (b_message: the reason).
CANCEL = """
    status = 'cancelled',
    result = {result},
    error_message = b.b_message,
    finished_at_utc = :now,
    lease_until_utc = NULL,
    updated_at_utc = :now"""

# Recovery of a lease whose holder is gone (expired, or the worker stopped sending
# heartbeats): queued again while attempts remain, else failed; cancelled if that was asked.
# b_message says why, with the holder and the attempt.
_REQUEUE = "(NOT q.cancel_requested AND q.attempts < q.max_attempts)"
RECOVER = f"""
    status = CASE WHEN q.cancel_requested THEN 'cancelled'
                  WHEN q.attempts >= q.max_attempts THEN 'failed'
                  ELSE 'queued' END,
    run_after_utc = CASE WHEN {_REQUEUE} THEN :now ELSE q.run_after_utc END,
    locked_by = CASE WHEN {_REQUEUE} THEN NULL ELSE q.locked_by END,
    finished_at_utc = CASE WHEN {_REQUEUE} THEN q.finished_at_utc ELSE :now END,
    error_message = b.b_message,
    lease_until_utc = NULL,
    wr_key = NULL,
    updated_at_utc = :now"""

# Extend the lease (the status does not change).
RENEW = """
    lease_until_utc = :lease_until"""

# kind -> (SET clause, extra guard). "expire" re-checks the expiry in the same statement, so a
# lease renewed since it was read is left alone.
KINDS: dict[str, tuple[str, str]] = {
    "complete": (COMPLETE, ""),
    "retry": (RETRY, ""),
    "fail": (FAIL, ""),
    "release": (RELEASE, ""),
    "cancel": (CANCEL, ""),
    "expire": (RECOVER, "\n  AND q.lease_until_utc < :now"),
    "worker_lost": (RECOVER, ""),
    "renew": (RENEW, ""),
}
