"""Claim rate with and without flow-control rows (issue 13: limits cost nothing when unset).

``python -m benchmarks.flow_limits [DATABASE_URL] [--tasks N] [--reps R]`` enqueues N tasks of
type ``a`` and drains them with claim(limit=10) + complete_many, three ways: no ``task_types``
row at all; a limit row on another type (``b``); and a ``max_running`` limit on ``a`` itself
(large enough never to bind: the limited claim path). Prints tasks/s per case (median of R).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from queue_core import migrate
from queue_core.database import Database
from queue_core.repositories import LeaseRepository, TaskRepository, TypeRepository
from queue_core.schemas import TaskCreate
from queue_core.settings import sqlite_url_for


def _reset(db: Database) -> None:
    from sqlalchemy import text

    with db.write() as conn:
        for table in ("task_logs", "task_dependencies", "task_queue", "task_types"):
            conn.execute(text(f"DELETE FROM {table}"))


def _drain(db: Database, tasks: int) -> float:
    TaskRepository(db).enqueue_many([TaskCreate(type="a") for _ in range(tasks)])
    leases = LeaseRepository(db)
    started = time.perf_counter()
    done = 0
    while done < tasks:
        claimed = leases.claim("bench", ["a"], limit=10)
        if not claimed:
            break
        leases.complete_many([(task.lease, None) for task in claimed])
        done += len(claimed)
    return done / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url", nargs="?")
    parser.add_argument("--tasks", type=int, default=3000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    url = args.url or sqlite_url_for(Path(tempfile.mkdtemp()) / "bench.db")
    with Database(url) as db:
        migrate.upgrade(db)
        cases = {
            "no task_types row": None,
            "limit row on another type": ("b", 1),
            "max_running on the claimed type (limited path)": ("a", 10**6),
        }
        for name, limit in cases.items():
            rates = []
            for _ in range(args.reps):
                _reset(db)
                if limit is not None:
                    TypeRepository(db).set_limits(limit[0], max_running=limit[1])
                rates.append(_drain(db, args.tasks))
            print(f"{db.dialect.name:10} {name:48} {statistics.median(rates):8.0f} tasks/s")


if __name__ == "__main__":
    main()
