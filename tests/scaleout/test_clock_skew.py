"""A worker host whose clock is 2 s fast (issue 15): measured, then fixed.

Measured before the fix (docs/scale-out.md#clock-skew): with 2 s leases, its sweeps saw the
other host's live leases as expired and recovered them (20 recoveries, 13 tasks run twice
out of 40). Workers now read "now" in the database's time (queue_core.clock.DatabaseClock),
so the skew no longer matters. Root-only, like every test of the network test bed.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from benchmarks.netbed import NetBed, unavailable_reason
from queue_core.database import Database

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason())),
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


def test_a_fast_host_does_not_recover_live_leases(bed: tuple[NetBed, Database]) -> None:
    from benchmarks.scaleout import run_skew

    report = run_skew(*bed, offset_seconds=2.0, lease_seconds=2.0, tasks=40, task_seconds=1.5)
    assert report["lost"] == 0, report
    assert report["recoveries"] == 0, report
    assert report["duplicates"] == 0, report
