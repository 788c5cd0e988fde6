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
from queue_core.dialects.postgresql import POSTGRESQL_CHECKPOINT_MESSAGE


class CheckpointMode(str, Enum):
    PASSIVE = "passive"
    FULL = "full"
    RESTART = "restart"
    TRUNCATE = "truncate"

    def __str__(self) -> str:
        return self.value


__all__ = ["POSTGRESQL_CHECKPOINT_MESSAGE", "CheckpointMode", "CheckpointReport", "checkpoint"]


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
    mode = CheckpointMode(mode)
    dialect, engine = db.dialect, db.engine
    wal_before = dialect.wal_bytes(engine)
    busy, log_frames, checkpointed = dialect.wal_checkpoint(engine, mode.value)
    return CheckpointReport(
        mode=mode,
        busy=busy,
        log_frames=log_frames,
        checkpointed_frames=checkpointed,
        wal_bytes_before=wal_before,
        wal_bytes_after=dialect.wal_bytes(engine),
    )


def wal_bytes(db: Database) -> int:
    """The WAL file's size now (0 on PostgreSQL, which has no queue-owned WAL file)."""
    return db.dialect.wal_bytes(db.engine)
