"""The machine around a run: versions, load, and the other tenants' CPU use.

The machine is shared: between two jobs the runner samples ``/proc/stat`` for 0.5 s while
none of our processes run, so the busy share it sees is other tenants' load (the peers'
noise gate). Before a job it waits, within limits, until that share is under the gate; a
job whose sample before or after is over the gate is marked noisy.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import platform
import sqlite3
import sys
import time
from typing import Any

VERSIONED = (
    "prismq-queue",
    "sqlalchemy",
    "huey",
    "persist-queue",
    "litequeue",
    "procrastinate",
    "pgqueuer",
    "psycopg",
    "psycopg-binary",
    "asyncpg",
    "orjson",
)


def loadavg() -> tuple[float, float, float] | None:
    try:
        return os.getloadavg()
    except (AttributeError, OSError):  # Windows
        return None


def machine_load() -> dict[str, Any]:
    avg = loadavg()
    out: dict[str, Any] = {"loadavg_1m": avg[0] if avg else None}
    for resource in ("cpu", "io"):
        try:
            with open(f"/proc/pressure/{resource}") as f:
                some = f.readline().split()
            out[f"{resource}_pressure_some_avg10"] = float(some[1].split("=")[1])
        except (OSError, IndexError, ValueError):
            pass
    return out


def cpu_busy(window: float = 0.5) -> float | None:
    """Percent of all CPUs busy over ``window`` s (None where /proc/stat does not exist)."""

    def snap() -> tuple[int, int]:
        with open("/proc/stat") as f:
            vals = [int(x) for x in f.readline().split()[1:9]]
        return vals[3] + vals[4], sum(vals)

    try:
        i0, t0 = snap()
        time.sleep(window)
        i1, t1 = snap()
    except OSError:
        return None
    return 100.0 * (1 - (i1 - i0) / max(1, t1 - t0))


def wait_for_quiet(gate: float, max_wait: float, busy: float | None) -> tuple[float, float | None]:
    """Wait up to ``max_wait`` s until other tenants use at most ``gate`` % of the CPUs."""
    t0 = time.monotonic()
    while busy is not None and busy > gate and time.monotonic() - t0 < max_wait:
        time.sleep(4.5)
        busy = cpu_busy()
    return time.monotonic() - t0, busy


def versions(pg_url: str | None) -> dict[str, Any]:
    v: dict[str, Any] = {
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "executable": sys.executable,
    }
    for dist in VERSIONED:
        try:
            v[dist] = md.version(dist)
        except md.PackageNotFoundError:
            v[dist] = None
    if pg_url:
        v.update(postgres_info(pg_url))
    return v


def postgres_info(pg_url: str) -> dict[str, Any]:
    try:
        import psycopg

        from benchmarks.systems import pg_connect_kwargs

        with psycopg.connect(autocommit=True, **pg_connect_kwargs(pg_url)) as c:
            row = c.execute("SELECT version()").fetchone()
            settings = {}
            for key in ("synchronous_commit", "fsync", "shared_buffers", "max_connections"):
                setting = c.execute(f"SHOW {key}").fetchone()
                settings[key] = setting[0] if setting else None
        return {"postgresql": row[0] if row else None, "postgresql_settings": settings}
    except Exception as exc:
        return {"postgresql": f"unavailable: {exc}"}
