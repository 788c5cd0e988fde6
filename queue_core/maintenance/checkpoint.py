"""WAL checkpoints (SQLite): copy the write-ahead log back into the database file.

SQLite already checkpoints PASSIVE-ly after commits once the WAL holds
``SQLITE_WAL_AUTOCHECKPOINT_PAGES`` pages. That checkpoint never waits, so a reader that is
always present (a dashboard polling, overlapping worker reads) can keep the WAL from ever
starting over, and the file grows. A RESTART or TRUNCATE checkpoint waits (busy_timeout) for
readers to move to the newest snapshot, then starts the WAL over; TRUNCATE also shrinks the
file to zero bytes. It blocks writers while it waits, so the scheduler runs it only when the
WAL has grown past ``maintenance_wal_truncate_bytes``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from queue_core.database import Database
from queue_core.maintenance._common import (
    FileSizes,
    NotSupportedOnBackend,
    is_sqlite,
    raw_sqlite,
)


class CheckpointMode(str, Enum):
    PASSIVE = "passive"
    FULL = "full"
    RESTART = "restart"
    TRUNCATE = "truncate"

    def __str__(self) -> str:
        return self.value


POSTGRESQL_CHECKPOINT_MESSAGE = (
    "PostgreSQL checkpoints its own WAL (checkpoint_timeout, max_wal_size); "
    "nothing to do for the queue"
)


@dataclass(frozen=True)
class CheckpointReport:
    mode: CheckpointMode
    busy: bool
    """True when the checkpoint could not finish (a reader or writer was in the way)."""
    log_frames: int
    """Frames in the WAL when the checkpoint ran (-1 when not in WAL mode)."""
    checkpointed_frames: int
    """Frames copied back into the database file by now (-1 when not in WAL mode)."""
    wal_bytes_before: int
    wal_bytes_after: int

    def summary(self) -> str:
        return (
            f"checkpoint {self.mode.value}: busy={int(self.busy)} log={self.log_frames} "
            f"checkpointed={self.checkpointed_frames} frames; WAL {self.wal_bytes_before} -> "
            f"{self.wal_bytes_after} bytes"
        )


def checkpoint(
    db: Database, mode: CheckpointMode | str = CheckpointMode.PASSIVE
) -> CheckpointReport:
    """Run ``PRAGMA wal_checkpoint(MODE)`` and report SQLite's three numbers.

    PostgreSQL raises :class:`NotSupportedOnBackend` (its server checkpoints by itself).
    """
    if not is_sqlite(db):
        raise NotSupportedOnBackend(POSTGRESQL_CHECKPOINT_MESSAGE)
    mode = CheckpointMode(mode)
    before = FileSizes.of(db)
    with raw_sqlite(db) as conn:
        busy, log_frames, checkpointed = conn.execute(
            f"PRAGMA wal_checkpoint({mode.value.upper()})"
        ).fetchone()
    after = FileSizes.of(db)
    return CheckpointReport(
        mode=mode,
        busy=bool(busy),
        log_frames=int(log_frames),
        checkpointed_frames=int(checkpointed),
        wal_bytes_before=before.wal_bytes,
        wal_bytes_after=after.wal_bytes,
    )


def wal_bytes(db: Database) -> int:
    """The WAL file's size now (0 on PostgreSQL, which has no queue-owned WAL file)."""
    return FileSizes.of(db).wal_bytes if is_sqlite(db) else 0
