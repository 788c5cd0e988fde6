"""What every measured queue provides, and the registry of them.

A *system* is one queue on one backend: prismq-queue on SQLite, the raw ``sqlite3`` loop,
pgqueuer, ... Each exposes the same producer and worker surface, so the four workloads in
:mod:`benchmarks.workloads` drive them all with the same code:

* producer side (in the job process): ``reset``, ``open_producer``, ``enqueue`` (one task, one
  call, one transaction), ``enqueue_batch`` (when ``SUPPORTS_BATCH``), ``preload``,
  ``close_producer``;
* worker side: ``worker_commands(nproc, variant)`` gives the argv of each worker process. Every
  worker runs :func:`benchmarks.records.task_body` once per task and stops on SIGTERM.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DATA_DIR_ENV = "PRISMQ_BENCH_DATA_DIR"
PG_URL_ENV = "PRISMQ_BENCH_PG_URL"
"""The SQLAlchemy URL of the benchmark's own PostgreSQL schema (``options=-csearch_path=``)."""


@dataclass(frozen=True)
class Where:
    """Where a system keeps its data during one job."""

    data_dir: Path
    pg_url: str | None


def where_from_env() -> Where:
    return Where(Path(os.environ[DATA_DIR_ENV]), os.environ.get(PG_URL_ENV) or None)


class System:
    NAME = "?"
    BACKEND = "sqlite"  # "sqlite" | "postgresql"
    LIBRARY: str | None = None
    """The distribution whose version the report shows; None for the hand-written loops."""
    REQUIRES: tuple[str, ...] = ()
    """Import names that must be importable for the system to run (the peers' libraries)."""
    SUPPORTS_BATCH = False
    BATCH_NOTE = ""
    W1_VARIANTS: tuple[str, ...] = ("default",)
    W1_VARIANT_ENV: dict[str, dict[str, str]] = {}
    """Environment of a W1 variant's producer process."""
    W3_VARIANTS: tuple[str, ...] = ("default",)
    W4_VARIANTS: tuple[str, ...] = ("default",)
    NOTES: tuple[str, ...] = ()

    def __init__(self, name: str, where: Where) -> None:
        self.name = name
        self.where = where

    # --- availability ---

    @classmethod
    def missing(cls) -> list[str]:
        return [mod for mod in cls.REQUIRES if importlib.util.find_spec(mod) is None]

    def workload_unavailable(self, workload: str) -> str | None:
        """Why this system cannot run ``workload`` (W1..W4) here, or None."""
        return None

    # --- storage ---

    @property
    def sqlite_path(self) -> Path:
        return self.where.data_dir / f"{self.name}.db"

    def remove_sqlite_files(self, path: Path | None = None) -> None:
        path = path or self.sqlite_path
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(str(path) + suffix).unlink(missing_ok=True)

    @property
    def pg_url(self) -> str:
        if self.where.pg_url is None:
            raise RuntimeError(f"{self.name} needs PostgreSQL and none is configured")
        return self.where.pg_url

    # --- producer ---

    def reset(self) -> None:
        raise NotImplementedError

    def open_producer(self) -> None:
        pass

    def close_producer(self) -> None:
        pass

    def enqueue(self, payload: dict[str, Any]) -> None:
        raise NotImplementedError

    def enqueue_batch(self, payloads: Sequence[dict[str, Any]]) -> None:
        raise NotImplementedError

    def preload(self, payloads: Sequence[dict[str, Any]], batch: int = 1000) -> None:
        if self.SUPPORTS_BATCH:
            for k in range(0, len(payloads), batch):
                self.enqueue_batch(payloads[k : k + batch])
        else:
            for p in payloads:
                self.enqueue(p)

    # --- worker ---

    def worker_commands(self, nproc: int, variant: str = "default") -> list[list[str]]:
        """Default: ``nproc`` single-threaded processes running :mod:`benchmarks.worker`."""
        return [
            [sys.executable, "-m", "benchmarks.worker", self.name, variant] for _ in range(nproc)
        ]

    def run_worker(self, variant: str, nproc: int = 1) -> None:
        raise NotImplementedError

    def worker_note(self, nproc: int, variant: str = "default") -> str:
        return f"{nproc} independent single-threaded worker process(es)"

    def verify(self, n: int) -> dict[str, Any]:
        """After a drain: what the queue itself says (acknowledged, log rows). Optional."""
        return {}

    def db_counters(self) -> dict[str, int] | None:
        """PostgreSQL's cumulative counters, for per-task deltas; None on SQLite.

        ``pg_stat_database`` is this run's alone (the runner gives each run a database of its
        own); ``pg_stat_wal`` is the whole server's, so WAL figures include other tenants'.
        Statements are counted by pg_stat_statements when the server loads it (in this
        database and schema's queries only), else left out."""
        if self.BACKEND != "postgresql":
            return None
        import psycopg

        with psycopg.connect(autocommit=True, **pg_connect_kwargs(self.pg_url)) as conn:
            conn.execute("SELECT pg_stat_force_next_flush()")
            row = conn.execute(
                "SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, tup_deleted,"
                " tup_returned, tup_fetched FROM pg_stat_database"
                " WHERE datname = current_database()"
            ).fetchone()
            wal = conn.execute(
                "SELECT wal_records, wal_sync, wal_write FROM pg_stat_wal"
            ).fetchone()
            calls = None
            with contextlib.suppress(psycopg.Error):
                calls = conn.execute(
                    "SELECT sum(calls) FROM pg_stat_statements s JOIN pg_database d"
                    " ON d.oid = s.dbid WHERE d.datname = current_database()"
                ).fetchone()
        assert row is not None
        assert wal is not None
        keys = (
            "xact_commit",
            "xact_rollback",
            "tup_inserted",
            "tup_updated",
            "tup_deleted",
            "tup_returned",
            "tup_fetched",
        )
        out = {k: int(v) for k, v in zip(keys, row, strict=True)}
        out.update(
            {k: int(v) for k, v in zip(("wal_records", "wal_sync", "wal_write"), wal, strict=True)}
        )
        if calls is not None and calls[0] is not None:
            out["statements"] = int(calls[0])
        return out


# name -> (module, class name). Order = the order of rows in the report.
SYSTEMS: dict[str, tuple[str, str]] = {
    "prismq_sqlite": ("benchmarks.prismq", "PrismqSqlite"),
    "raw_sqlite3": ("benchmarks.baselines", "RawSqlite"),
    "raw_sqlite3_full": ("benchmarks.baselines", "RawSqlite"),
    "huey_sqlite": ("benchmarks.peers", "HueyPeer"),
    "persist_queue_ack": ("benchmarks.peers", "PersistQueuePeer"),
    "litequeue": ("benchmarks.peers", "LiteQueuePeer"),
    "prismq_pg": ("benchmarks.prismq", "PrismqPostgres"),
    "raw_psycopg": ("benchmarks.baselines", "RawPg"),
    "procrastinate": ("benchmarks.peers", "ProcrastinatePeer"),
    "pgqueuer": ("benchmarks.peers", "PgQueuerPeer"),
}
PRISMQ = ("prismq_sqlite", "prismq_pg")
BASELINES = ("raw_sqlite3", "raw_psycopg")
PEERS = ("huey_sqlite", "persist_queue_ack", "litequeue", "procrastinate", "pgqueuer")
DEFAULT_SYSTEMS = (
    "prismq_sqlite",
    "raw_sqlite3",
    *PEERS[:3],
    "prismq_pg",
    "raw_psycopg",
    *PEERS[3:],
)


def system_class(name: str) -> type[System]:
    module_name, class_name = SYSTEMS[name]
    cls: type[System] = getattr(importlib.import_module(module_name), class_name)
    return cls


def get_system(name: str, where: Where | None = None) -> System:
    return system_class(name)(name, where or where_from_env())


def pg_connect_kwargs(url: str) -> dict[str, Any]:
    """psycopg.connect() keyword arguments for a SQLAlchemy PostgreSQL URL (keeps options=)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    params: dict[str, Any] = {
        "host": parsed.host,
        "port": parsed.port,
        "user": parsed.username,
        "password": parsed.password,
        "dbname": parsed.database,
    }
    params.update({k: v for k, v in parsed.query.items() if isinstance(v, str)})
    return {k: v for k, v in params.items() if v is not None}


def pg_schema_of(url: str) -> str | None:
    """The schema named by ``options=-csearch_path=SCHEMA`` in the URL, if any."""
    from sqlalchemy.engine import make_url

    options = make_url(url).query.get("options")
    if isinstance(options, str) and "search_path=" in options:
        return options.split("search_path=", 1)[1].split()[0]
    return None
