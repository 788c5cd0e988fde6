"""Workers drain through PgBouncer in transaction mode (docs/scale-out.md#pgbouncer).

PgBouncer before 1.21 (Debian 12 ships 1.18) does not carry server-side prepared statements
across transactions; with PRISMQ_QUEUE_PG_PREPARED_STATEMENTS=false the workers do not use
them. Root-only: a throwaway cluster and PgBouncer in the network-namespace test bed.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator

import pytest

from benchmarks.netbed import NetBed, unavailable_reason
from queue_core.database import Database
from queue_core.settings import IDLE_SLEEP_MAX_SECONDS

TASKS = 600
BOUNCER_POOL = 2  # fewer server connections than workers: transactions must share them

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason())),
    pytest.mark.skipif(
        shutil.which("pgbouncer") is None and shutil.which("pgbouncer", path="/usr/sbin") is None,
        reason="pgbouncer is not installed",
    ),
]


@pytest.fixture
def bed() -> Iterator[tuple[NetBed, Database]]:
    from benchmarks.scaleout import new_bed

    bed = new_bed(hosts=2)
    db = Database(bed.admin_url)
    try:
        yield bed, db
    finally:
        db.dispose()
        bed.close()


def test_workers_drain_through_pgbouncer_in_transaction_mode(
    bed: tuple[NetBed, Database],
) -> None:
    from benchmarks.scaleout import (
        DRAIN_TIMEOUT,
        HANDLERS,
        count_status,
        enqueue,
        wait_until,
    )

    netbed, db = bed
    url = netbed.start_pgbouncer(pool_mode="transaction", pool_size=BOUNCER_POOL)
    for host in netbed.hosts:
        for index in (1, 2):
            netbed.spawn_worker(
                host,
                index,
                imports=[HANDLERS],
                options=["--concurrency", "2"],
                url=url,
                env={"PRISMQ_QUEUE_PG_PREPARED_STATEMENTS": "false"},
            )
    enqueue(db, TASKS, "scaleout.noop", {})
    wait_until(lambda: count_status(db, "completed") == TASKS, DRAIN_TIMEOUT, "the drain")
    # Notifications never reach a LISTEN through PgBouncer in transaction mode: the workers
    # must know it, and keep polling instead of sleeping until the idle re-check.
    time.sleep(3.0)  # fully idle
    started = time.monotonic()
    enqueue(db, 1, "scaleout.noop", {})
    wait_until(lambda: count_status(db, "completed") == TASKS + 1, 30.0, "an idle pickup")
    assert time.monotonic() - started < IDLE_SLEEP_MAX_SECONDS / 2
    netbed.stop_processes()
    logs = "".join(p.read_text(errors="replace") for p in netbed.logs.glob("h*-w*.log"))
    assert "prepared statement" not in logs
    assert "database error" not in logs
    assert "notifications do not reach the LISTEN connection" in logs
