"""What the finished-task NOTIFY costs a PostgreSQL drain (issue 13 §5), measured A/B in one run.

``python -m benchmarks.finished_notify [--pg-url URL] [--procs 4] [--seconds 40] [--batch 10]``

W3 on a shared machine swings by ±25 % from rep to rep, far more than the few percent to
measure. So this one interleaves finely instead: ``--procs`` processes drain a pre-loaded
queue the way a worker does (``apply_and_claim``: complete the last batch and claim the next
in one transaction) with no handler, and every ``--block`` seconds of wall clock all of them
switch together between the real ``notify_finished_raw`` and a no-op. Tasks completed in each
mode over the same interleaved seconds give the ratio. Writers notify only while some session
LISTENs for finished tasks: without ``--listener`` (and no other listener on the server) the
real path costs one pg_stat_activity lookup per process every PG_LISTENER_LOOKUP_SECONDS;
with it, one ``SELECT pg_notify`` per transaction and the NOTIFY's commit.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import time
import uuid
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from queue_core import migrate
from queue_core.claims import ClaimRequest
from queue_core.database import Database
from queue_core.dialects.pg_listener import listen_connection
from queue_core.repositories import LeaseRepository, TaskRepository
from queue_core.schemas import TaskCreate
from queue_core.settings import PG_FINISHED_CHANNEL, PG_LISTENER_APPLICATION_NAME
from queue_core.transitions import Completed

PG_ENV = "PRISMQ_QUEUE_TEST_POSTGRES_URL"


def _mode(block: float) -> int:
    """0: notify, 1: do not; the same for every process at the same wall-clock instant."""
    return int(time.time() / block) % 2


def _drain(
    url: str,
    start: float,
    seconds: float,
    block: float,
    batch: int,
    round_trip: bool,
    calibrate: bool,
) -> list[int]:
    db = Database(url)
    leases = LeaseRepository(db)
    dialect: Any = db.dialect
    notify = dialect.notify_finished_raw
    mode = 0  # decided once per transaction, so each one counts where it ran

    def notify_or_not(cursor: Any, ids: Any) -> None:
        if mode == 0 and not calibrate:
            notify(cursor, ids)
        elif round_trip and ids:
            cursor.execute("SELECT 1")  # the statement's round trip, without the NOTIFY

    dialect.notify_finished_raw = notify_or_not
    request = ClaimRequest(f"bench-{os.getpid()}", ["bench.noop"], {}, batch, 60.0)
    done = [0, 0]
    outcomes: list[Completed] = []
    while time.time() < start:
        time.sleep(0.001)
    while time.time() < start + seconds:
        mode = _mode(block)
        _, claimed = leases.apply_and_claim(outcomes, request)
        done[mode] += len(outcomes)
        outcomes = [Completed(task.lease, None) for task in claimed]
        if not claimed and not outcomes:
            break
    db.dispose()
    return done


def _listeners(admin: Any) -> int:
    """Listening sessions of other processes on the server (writers notify while any is)."""
    with admin.connect() as conn:
        return int(
            conn.execute(
                text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :name"),
                {"name": PG_LISTENER_APPLICATION_NAME},
            ).scalar_one()
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pg-url", default=os.environ.get(PG_ENV))
    ap.add_argument("--procs", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=40.0)
    ap.add_argument("--block", type=float, default=0.5)
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--tasks", type=int, default=250_000)
    ap.add_argument(
        "--listener",
        action="store_true",
        help="Hold a LISTEN for finished tasks, as a waiting process does: writers notify.",
    )
    ap.add_argument(
        "--calibrate",
        action="store_true",
        help="A/A: no-op in both modes (the ratio then shows the method's own noise).",
    )
    ap.add_argument(
        "--round-trip",
        action="store_true",
        help="Without the NOTIFY, still send a SELECT 1 (what a statement of its own costs).",
    )
    a = ap.parse_args()
    if not a.pg_url:
        raise SystemExit(f"--pg-url or {PG_ENV} is needed")
    base = Database(a.pg_url).url
    schema = f"bench_notify_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    url = (
        make_url(base)
        .update_query_dict({"options": f"-csearch_path={schema}"})
        .render_as_string(hide_password=False)
    )
    try:
        db = Database(url)
        migrate.upgrade(db)
        tasks = TaskRepository(db)
        for _ in range(0, a.tasks, 1000):
            tasks.enqueue_many([TaskCreate(type="bench.noop") for _ in range(1000)])
        db.dispose()
        listener = listen_connection(db.engine.url, PG_FINISHED_CHANNEL) if a.listener else None
        start = time.time() + 2.0
        try:
            with multiprocessing.Pool(a.procs) as pool:
                results = pool.starmap(
                    _drain,
                    [(url, start, a.seconds, a.block, a.batch, a.round_trip, a.calibrate)]
                    * a.procs,
                )
        finally:
            if listener is not None:
                listener.close()
        notified = sum(r[0] for r in results)
        silent = sum(r[1] for r in results)
        print(
            json.dumps(
                {
                    "procs": a.procs,
                    "seconds": a.seconds,
                    "batch": a.batch,
                    "listener": a.listener,
                    "other_listeners": _listeners(admin),
                    "tasks_with_notify": notified,
                    "tasks_without": silent,
                    "ratio": round(notified / silent, 4) if silent else None,
                }
            )
        )
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


if __name__ == "__main__":
    main()
