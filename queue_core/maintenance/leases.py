"""Maintenance leases: one row per scheduled job in ``maintenance_leases``.

A row says "``holder`` runs this job, and nobody else starts it before ``lease_until_utc``".
The scheduler takes a lease for the length of a run, then moves ``lease_until_utc`` to when the
job is next due, so the row also spaces the runs out across every process.

Taking a lease is one statement on both dialects: an upsert that inserts the row when there is
none and overwrites it only when the current lease has expired. SQLite runs it under
BEGIN IMMEDIATE (one writer at a time); PostgreSQL's ON CONFLICT waits for a concurrent insert
or update of the same row and re-checks the WHERE against the committed row. Either way two
contenders can never both get a row back, so exactly one of them runs the job.
"""

from __future__ import annotations

import builtins
import os
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Table, bindparam, select, text, update

from queue_core.clock import Clock, utcnow
from queue_core.database import Database
from queue_core.models import MaintenanceLeaseRow
from queue_core.types import UtcDateTime

LEASES: Table = MaintenanceLeaseRow.__table__  # type: ignore[assignment]

_ACQUIRE = text(
    """
    INSERT INTO maintenance_leases (name, holder, lease_until_utc)
    VALUES (:name, :holder, :until)
    ON CONFLICT (name) DO UPDATE SET
        holder = excluded.holder,
        lease_until_utc = excluded.lease_until_utc
    WHERE maintenance_leases.lease_until_utc <= :now
    RETURNING holder
    """
).bindparams(bindparam("until", type_=UtcDateTime()), bindparam("now", type_=UtcDateTime()))


def default_holder() -> str:
    """Unique per scheduler: host and pid for people, a random suffix for threads."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class MaintenanceLease:
    name: str
    holder: str
    lease_until_utc: datetime


class MaintenanceLeases:
    def __init__(self, db: Database, clock: Clock = utcnow) -> None:
        self.db = db
        self.clock = clock

    def try_acquire(self, name: str, holder: str, until: datetime) -> bool:
        """Take the lease on ``name`` until ``until`` if it is free or expired."""
        with self.db.write() as conn:
            row = conn.execute(
                _ACQUIRE, {"name": name, "holder": holder, "until": until, "now": self.clock()}
            ).first()
        return row is not None

    def extend(self, name: str, holder: str, until: datetime) -> bool:
        """Move the lease's end while ``holder`` still has it (renewal, or the next due time
        after a run). False when someone else took it meanwhile."""
        with self.db.write() as conn:
            changed = conn.execute(
                update(LEASES)
                .where(LEASES.c.name == name, LEASES.c.holder == holder)
                .values(lease_until_utc=until)
            ).rowcount
        return changed == 1

    def get(self, name: str) -> MaintenanceLease | None:
        with self.db.read() as conn:
            row = conn.execute(select(LEASES).where(LEASES.c.name == name)).first()
        if row is None:
            return None
        return MaintenanceLease(row.name, row.holder, row.lease_until_utc)

    def list(self) -> builtins.list[MaintenanceLease]:
        with self.db.read() as conn:
            rows = conn.execute(select(LEASES).order_by(LEASES.c.name)).all()
        return [MaintenanceLease(row.name, row.holder, row.lease_until_utc) for row in rows]
