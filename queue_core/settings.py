"""Every default of the queue as a named constant, and the settings read from the environment.

Settings come from ``PRISMQ_QUEUE_*`` variables (pydantic-settings). CLI flags override them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Literal

from platformdirs import user_data_dir
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "PRISMQ_QUEUE_"

# --- task defaults (CONTRACT §4, §5, §8) ---
PRIORITY_DEFAULT = 100
PRIORITY_MIN = 1
PRIORITY_MAX = 1000
MAX_ATTEMPTS_DEFAULT = 5
MAX_ATTEMPTS_MIN = 1
MAX_ATTEMPTS_MAX = 100
TYPE_MAX_LENGTH = 200
TYPE_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.:\-/]*$"
IDEMPOTENCY_KEY_MAX_LENGTH = 255
LIST_LIMIT_DEFAULT = 100
LIST_LIMIT_MAX = 1000
BATCH_MAX = 1000
PAYLOAD_MAX_BYTES_DEFAULT = 1024 * 1024
JSON_MAX_DEPTH_DEFAULT = 32

# --- flow control (CONTRACT §9, docs/scheduling.md) ---
SCHEDULE_NAME_MAX_LENGTH = 200
SCHEDULE_TIMEZONE_DEFAULT = "UTC"
SCHEDULE_CATCH_UP_DEFAULT = "latest"
SCHEDULE_CATCH_UP_ALL_MAX = 100  # catch-up "all" enqueues at most this many missed times
# A due time older than this when the scheduler reaches it counts as missed (the catch-up
# policy decides); a younger one is simply late (a failover, a slow round) and is enqueued.
SCHEDULE_MISSED_AFTER_SECONDS = 60.0
MAINTENANCE_SCHEDULES_INTERVAL_SECONDS = 1.0  # how often the elected runner looks for due times
# The schedules job's lease outlives a round by this much: a runner that dies is replaced
# this soon, well inside SCHEDULE_MISSED_AFTER_SECONDS, so a failover misses no due time.
MAINTENANCE_SCHEDULES_RUN_LEASE_SECONDS = 10.0
DEPENDS_ON_MAX = 1000  # dependencies of one task
DEPENDENCY_CASCADE_MAX_DEPTH = 10_000  # a guard: the graph is acyclic by construction

# --- retry back-off (CONTRACT §4): min(base * 2^(attempts-1), cap), with jitter ---
RETRY_BASE_SECONDS = 1.0
RETRY_CAP_SECONDS = 300.0
RETRY_JITTER_FRACTION = 0.1

# --- leases and workers ---
LEASE_SECONDS_DEFAULT = 30.0
LEASE_SECONDS_MIN = 1.0
RENEW_FRACTION = 1 / 3  # renew when a third of the lease has passed: two renewals can fail
HEARTBEAT_SECONDS_DEFAULT = 5.0
WORKER_STALE_AFTER_SECONDS = 30.0
POLL_INTERVAL_DEFAULT = 0.5
# TaskRepository.wait reads the task once per this interval, never faster than a worker polls
# (CONTRACT §9): a 10-second wait is about 20 short reads, each on a connection held only for it.
WAIT_POLL_INTERVAL_SECONDS = POLL_INTERVAL_DEFAULT
# Where a notification announces finished tasks (PostgreSQL's LISTEN), a wait re-reads the
# task only this often, in case a notification was lost (a dropped LISTEN connection).
WAIT_FALLBACK_SECONDS = 5.0
WAIT_REST_MAX_SECONDS = 60.0  # GET /api/queue/tasks/{id}?wait= (CONTRACT §8)
WAIT_CLI_MAX_SECONDS = 10 * 365 * 86_400.0  # `tasks wait --timeout`: past it is a typo
IDLE_BACKOFF_MIN_SECONDS = 0.001
# An idle worker whose wake-ups are reliable (LISTEN/NOTIFY that was seen to deliver, SQLite's
# data_version) sleeps until the next task is due, at most this long (or the poll interval,
# when longer), instead of claiming every poll interval. Whatever makes work due sooner
# announces it: enqueue and retry when due within this, release, recovery, dependencies,
# resume. The cap bounds what a lost announcement costs.
IDLE_SLEEP_MAX_SECONDS = 10.0
CONCURRENCY_DEFAULT = 1
SHUTDOWN_GRACE_SECONDS_DEFAULT = 30.0
SWEEP_INTERVAL_SECONDS = 5.0
# Workers read "now" in the database's time (queue_core.clock.DatabaseClock): the offset of
# their host's clock is measured at start and this often; below the second figure it is noise.
CLOCK_SYNC_INTERVAL_SECONDS = 60.0
CLOCK_OFFSET_IGNORED_SECONDS = 0.05
RENEW_LOG_EVERY = 10  # log one renewal in ten: renewals are frequent and alike

# --- SQLite engine (reasons in docs/configuration.md) ---
SQLITE_BUSY_TIMEOUT_MS = 5000
SQLITE_CACHE_SIZE_KIB = 16 * 1024
SQLITE_WAL_AUTOCHECKPOINT_PAGES = 1000
SQLITE_JOURNAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024
SQLITE_MIN_VERSION = (3, 35, 0)  # UPDATE ... RETURNING

# --- PostgreSQL pool ---
PG_POOL_SIZE = 5
# Server-side prepared statements; switch off behind PgBouncer < 1.21 in transaction mode.
PG_PREPARED_STATEMENTS_DEFAULT = True
# A queue session whose client has been unreachable this long (a host cut off mid-transaction)
# is ended by the server, freeing its row locks; 0 leaves the server's settings alone.
PG_LOST_CLIENT_TIMEOUT_SECONDS = 10.0
PG_MAX_OVERFLOW = 10
PG_POOL_TIMEOUT_SECONDS = 30.0
PG_NOTIFY_CHANNEL = "prismq_queue_new_task"
# Tasks reached completed, failed or cancelled; the payload lists their ids ("1,2,3"), or is
# empty ("re-check every task") when the list would pass PG_FINISHED_PAYLOAD_MAX_BYTES (the
# server refuses payloads of 8000 bytes and more).
PG_FINISHED_CHANNEL = "prismq_queue_finished"
PG_FINISHED_PAYLOAD_MAX_BYTES = 7900
# The LISTEN connection of waits (queue_core/dialects/pg_listener.py): reconnect after a
# failure this long after it; close it once no wait has needed it for this long.
PG_LISTENER_RETRY_SECONDS = 2.0
PG_LISTENER_IDLE_SECONDS = 60.0
# A transaction sends that notification only while some session of the database LISTENs for
# it (its application_name, in pg_stat_activity), which each process looks up at most once per
# PG_LISTENER_LOOKUP_SECONDS: a drain nobody waits on pays nothing. A new listener is counted
# live (waits sleep past the poll interval) only once every process must have seen it.
PG_LISTENER_APPLICATION_NAME = "prismq-queue-wait-listener"
PG_LISTENER_LOOKUP_SECONDS = 0.5
PG_LISTENER_WARMUP_SECONDS = 2 * PG_LISTENER_LOOKUP_SECONDS
PG_PING_AFTER_IDLE_SECONDS = 1.0  # the hot path checks a kept connection idle this long
# A worker's LISTEN connection proves at start that notifications reach it (not behind
# PgBouncer in transaction mode) within this long. Every LISTEN connection (workers' and
# waits') uses TCP keepalives (libpq's keepalives_*, unless the URL sets them) to find a dead
# connection within idle + interval x count seconds: a silent LISTEN would otherwise let idle
# workers sleep through new work.
PG_LISTEN_PROBE_SECONDS = 2.0
PG_LISTEN_KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}

# --- API ---
API_HOST_DEFAULT = "127.0.0.1"
API_PORT_DEFAULT = 8000
UP_PROGRESS_INTERVAL_SECONDS = 10.0  # `up` prints what moved in the queue this often
RETRY_AFTER_SECONDS = 1

# --- integration with an in-process BackgroundTaskManager (workers.integration) ---
AuditMode = Literal["full", "failures"]
"""CONTRACT §3: what task_logs records besides the handlers' own records. ``full``: every
transition; ``failures``: only retried, failed, cancelled, recovered and re-queued."""
AUDIT_DEFAULT: AuditMode = "full"

TaskManagerKind = Literal["in-memory", "queue"]
TaskManagerFallback = Literal["fail", "in-memory"]
TASK_MANAGER_DEFAULT: TaskManagerKind = "in-memory"  # switching to the queue is a deliberate act
TASK_MANAGER_FALLBACK_DEFAULT: TaskManagerFallback = "fail"  # an unreachable queue is loud
# The queue-backed manager copies task states into the run registry by polling, backing off
# from the minimum to the maximum interval while nothing changes: that maximum is the lag.
RUN_SYNC_MIN_INTERVAL_SECONDS = 0.05
RUN_SYNC_MAX_INTERVAL_SECONDS = 1.0
RUN_CANCEL_WAIT_SECONDS = 5.0  # cancel_task waits this long for a running task to stop
EMBEDDED_CONCURRENCY_DEFAULT = 2  # worker slots inside a web process
EMBEDDED_SHUTDOWN_GRACE_SECONDS = 10.0  # web servers give shutdown less time than workers

# --- maintenance (docs/operations.md): an interval of 0 switches that job off ---
MAINTENANCE_ENABLED_DEFAULT = True
MAINTENANCE_SWEEP_INTERVAL_SECONDS = SWEEP_INTERVAL_SECONDS
MAINTENANCE_CHECKPOINT_INTERVAL_SECONDS = 60.0
MAINTENANCE_WAL_TRUNCATE_BYTES = 16 * 1024 * 1024  # a PASSIVE checkpoint becomes TRUNCATE above
MAINTENANCE_OPTIMIZE_INTERVAL_SECONDS = 3600.0
MAINTENANCE_PURGE_INTERVAL_SECONDS = 3600.0
# A job's lease outlives the job by this much at least, so a runner that dies mid-job frees it.
MAINTENANCE_RUN_LEASE_SECONDS = 60.0
RETENTION_DAYS_DEFAULT = 7.0  # completed and cancelled tasks; failed ones are the dead letter
LOG_RETENTION_DAYS_DEFAULT = 30.0
PURGE_BATCH_SIZE = 500  # rows per short write transaction
BACKUP_PAGES_PER_STEP = 256  # 1 MiB of 4 KiB pages between progress reports
COPY_BATCH_SIZE = 2000  # `db copy`: rows per read and per target write transaction

# --- dashboard (/ui, docs/dashboard.md) ---
UI_SESSION_SECONDS = 12 * 3600  # a dashboard sign-in lasts this long
UI_PAGE_SIZE = 50  # tasks per page of the task lists
UI_CHART_MINUTES = 60  # the overview's charts cover the last hour, one point per minute
UI_REFRESH_SECONDS = 5  # the overview reloads its figures this often
# Counting every finished task is the one O(history) read of the overview (about 90 ms of CPU
# at 10^6 tasks on SQLite), so each server process reuses that count for this long; queued and
# leased counts are always live, and the dashboard's own actions refresh it at once.
UI_FINISHED_COUNTS_SECONDS = 30.0
QUEUE_SAMPLE_INTERVAL_SECONDS = 60.0  # the maintenance job `sample` records the depth this often
QUEUE_SAMPLE_RETENTION_SECONDS = 86_400.0  # and keeps a day of samples

WINDOWS_DEFAULT_DB = Path(r"C:\Data\PrismQ\queue\queue.db")


def default_db_path() -> Path:
    """CONTRACT §2: a fixed path on Windows, the platform user-data directory elsewhere."""
    if sys.platform == "win32":
        return WINDOWS_DEFAULT_DB
    return Path(user_data_dir("prismq", appauthor=False)) / "queue" / "queue.db"


class QueueSettings(BaseSettings):
    """Settings from ``PRISMQ_QUEUE_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    database_url: str | None = None
    db_path: Path | None = None
    api_keys: str | None = None
    cors_origins: str | None = None
    payload_max_bytes: int = Field(default=PAYLOAD_MAX_BYTES_DEFAULT, ge=1)
    json_max_depth: int = Field(default=JSON_MAX_DEPTH_DEFAULT, ge=1)
    sqlite_busy_timeout_ms: int = Field(default=SQLITE_BUSY_TIMEOUT_MS, ge=0)
    pg_pool_size: int = Field(default=PG_POOL_SIZE, ge=1)
    pg_prepared_statements: bool = PG_PREPARED_STATEMENTS_DEFAULT
    pg_lost_client_timeout_seconds: float = Field(default=PG_LOST_CLIENT_TIMEOUT_SECONDS, ge=0)
    worker_stale_after_seconds: float = Field(default=WORKER_STALE_AFTER_SECONDS, gt=0)
    retry_base_seconds: float = Field(default=RETRY_BASE_SECONDS, ge=0)
    retry_cap_seconds: float = Field(default=RETRY_CAP_SECONDS, ge=0)
    audit: AuditMode = AUDIT_DEFAULT
    task_manager: TaskManagerKind = TASK_MANAGER_DEFAULT
    task_manager_fallback: TaskManagerFallback = TASK_MANAGER_FALLBACK_DEFAULT
    maintenance_enabled: bool = MAINTENANCE_ENABLED_DEFAULT
    maintenance_sweep_interval_seconds: float = Field(
        default=MAINTENANCE_SWEEP_INTERVAL_SECONDS, ge=0
    )
    maintenance_checkpoint_interval_seconds: float = Field(
        default=MAINTENANCE_CHECKPOINT_INTERVAL_SECONDS, ge=0
    )
    maintenance_wal_truncate_bytes: int = Field(default=MAINTENANCE_WAL_TRUNCATE_BYTES, ge=0)
    maintenance_optimize_interval_seconds: float = Field(
        default=MAINTENANCE_OPTIMIZE_INTERVAL_SECONDS, ge=0
    )
    maintenance_purge_interval_seconds: float = Field(
        default=MAINTENANCE_PURGE_INTERVAL_SECONDS, ge=0
    )
    maintenance_run_lease_seconds: float = Field(default=MAINTENANCE_RUN_LEASE_SECONDS, gt=0)
    maintenance_sample_interval_seconds: float = Field(default=QUEUE_SAMPLE_INTERVAL_SECONDS, ge=0)
    maintenance_schedules_interval_seconds: float = Field(
        default=MAINTENANCE_SCHEDULES_INTERVAL_SECONDS, ge=0
    )
    retention_days: float = Field(default=RETENTION_DAYS_DEFAULT, gt=0)
    log_retention_days: float = Field(default=LOG_RETENTION_DAYS_DEFAULT, gt=0)
    purge_include_failed: bool = False
    purge_batch_size: int = Field(default=PURGE_BATCH_SIZE, ge=1)

    def resolved_database_url(self, override: str | None = None) -> str:
        return resolve_database_url(override, self)

    def api_key_list(self) -> list[str]:
        if not self.api_keys:
            return []
        return [key.strip() for key in self.api_keys.split(",") if key.strip()]


def resolve_database_url(override: str | None = None, settings: QueueSettings | None = None) -> str:
    """CONTRACT §2: flag, PRISMQ_QUEUE_DATABASE_URL, PRISMQ_QUEUE_DB_PATH, then the default."""
    if override:
        return override
    settings = settings or QueueSettings()
    if settings.database_url:
        return settings.database_url
    path = settings.db_path or default_db_path()
    return sqlite_url_for(path)


def sqlite_url_for(path: Path | str) -> str:
    return "sqlite:///" + Path(os.path.expanduser(str(path))).resolve().as_posix()
