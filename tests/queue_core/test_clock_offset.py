"""The clock-offset test hook (PRISMQ_QUEUE_TEST_CLOCK_OFFSET_SECONDS) moves a process's now."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta

from queue_core.clock import CLOCK_OFFSET_ENV, DatabaseClock, ManualClock, utcnow
from queue_core.database import Database
from queue_core.settings import CLOCK_OFFSET_IGNORED_SECONDS

PROBE = (
    "import time; from queue_core.clock import utcnow; print(utcnow().timestamp() - time.time())"
)


def _offset_seen(value: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != CLOCK_OFFSET_ENV}
    if value is not None:
        env[CLOCK_OFFSET_ENV] = value
    return subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60
    )


def test_offset_moves_now_and_is_off_by_default() -> None:
    fast = _offset_seen("2.5")
    assert fast.returncode == 0, fast.stderr
    assert 2.4 < float(fast.stdout) < 2.6
    plain = _offset_seen(None)
    assert abs(float(plain.stdout)) < 0.1


def test_a_bad_offset_is_refused() -> None:
    bad = _offset_seen("two")
    assert bad.returncode != 0
    assert CLOCK_OFFSET_ENV in bad.stderr


def test_database_clock_follows_the_database_not_the_host(db: Database) -> None:
    """A host clock 2 s fast (or years off) reads the database's time once synced."""
    for skew in (2.0, -2.0, 86_400.0 * 400):
        host = ManualClock(utcnow() + timedelta(seconds=skew))
        clock = DatabaseClock(db.now, base=host)
        assert abs(clock() - host()) < timedelta(seconds=0.001)  # not synced yet
        offset = clock.sync()
        assert abs(offset.total_seconds() + skew) < 1.0
        assert abs((clock() - db.now()).total_seconds()) < 1.0
        host.advance(5)  # the host's clock moves on: the clock moves with it
        assert abs((clock() - db.now()).total_seconds() - 5) < 1.0


def test_an_offset_below_the_noise_floor_counts_as_none() -> None:
    host = ManualClock()
    server = ManualClock(host() + timedelta(seconds=CLOCK_OFFSET_IGNORED_SECONDS / 2))
    clock = DatabaseClock(server, base=host)
    assert clock.sync() == timedelta(0)
    server.advance(1.0)
    assert clock.sync() == server() - host()
