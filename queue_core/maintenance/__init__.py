"""Database maintenance, one module per job, and the scheduler workers run them from.

| module | job |
|---|---|
| ``backup`` | online SQLite backup (backup API) and restore; PostgreSQL uses pg_dump |
| ``checkpoint`` | WAL checkpoints (SQLite) |
| ``vacuum`` | VACUUM (SQLite rewrite; PostgreSQL ``VACUUM (ANALYZE)``) |
| ``analyze`` | ANALYZE and ``PRAGMA optimize`` |
| ``purge`` | retention: old finished tasks and old task logs, in short batches |
| ``leases`` | the ``maintenance_leases`` rows that elect one runner per job |
| ``scheduler`` | ``MaintenanceScheduler.run_due()``, called from the worker loop |
| ``views`` | the dashboard views' SQL per dialect (migration 0002) |
| ``metrics_sql`` | typed reads of those views, for users' own code (not used by the server) |

Sweep (recovery of expired leases) lives with the repositories: ``queue_core.repositories.sweep``.
"""

from queue_core.maintenance._common import MaintenanceFailed, NotSupportedOnBackend
from queue_core.maintenance.analyze import analyze, optimize
from queue_core.maintenance.backup import BackupReport, RestoreReport, backup, restore
from queue_core.maintenance.checkpoint import CheckpointMode, CheckpointReport, checkpoint
from queue_core.maintenance.leases import MaintenanceLease, MaintenanceLeases
from queue_core.maintenance.metrics_sql import Snapshot, read_snapshot
from queue_core.maintenance.purge import PurgeCounts, PurgeReport, count_purgeable, purge
from queue_core.maintenance.scheduler import (
    JobContext,
    JobResult,
    JobRun,
    MaintenanceJob,
    MaintenanceScheduler,
    default_jobs,
)
from queue_core.maintenance.vacuum import VacuumReport, vacuum

__all__ = [
    "BackupReport",
    "CheckpointMode",
    "CheckpointReport",
    "JobContext",
    "JobResult",
    "JobRun",
    "MaintenanceFailed",
    "MaintenanceJob",
    "MaintenanceLease",
    "MaintenanceLeases",
    "MaintenanceScheduler",
    "NotSupportedOnBackend",
    "PurgeCounts",
    "PurgeReport",
    "RestoreReport",
    "Snapshot",
    "VacuumReport",
    "analyze",
    "backup",
    "checkpoint",
    "count_purgeable",
    "default_jobs",
    "optimize",
    "purge",
    "read_snapshot",
    "restore",
    "vacuum",
]
