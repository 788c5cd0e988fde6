"""The physical-limit yardsticks: plain ``sqlite3`` and plain psycopg 3, no queue library.

Faithful to the peers' ``raw_sqlite`` and ``raw_pg`` (same table shape, PRAGMAs, claim and
acknowledgement SQL, same loop), so the ratios in the report compare with theirs.

* ``raw_sqlite3``: WAL, ``synchronous=NORMAL`` (``raw_sqlite3_full``: ``FULL``), busy timeout
  30 s, ``BEGIN IMMEDIATE``; claim = ``UPDATE ... WHERE id=(SELECT id ... ORDER BY priority, id
  LIMIT 1) RETURNING id, payload``; ack = a second ``UPDATE status='done'`` transaction.
* ``raw_psycopg``: autocommit (each statement its own transaction); claim = the same UPDATE
  with ``FOR UPDATE SKIP LOCKED`` in the sub-select.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from benchmarks.loop import poll_loop, sqlite_busy
from benchmarks.records import task_body
from benchmarks.systems import System, Where, pg_connect_kwargs

SQLITE_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS tasks(
         id INTEGER PRIMARY KEY,
         status TEXT NOT NULL DEFAULT 'queued',
         priority INTEGER NOT NULL DEFAULT 0,
         payload TEXT NOT NULL,
         lease_expires_at REAL)""",
    "CREATE INDEX IF NOT EXISTS tasks_queued ON tasks(priority, id) WHERE status = 'queued'",
)
SQLITE_INSERT = "INSERT INTO tasks(status, priority, payload) VALUES ('queued', 0, ?)"
SQLITE_CLAIM = """UPDATE tasks SET status = 'running', lease_expires_at = ?
           WHERE id = (SELECT id FROM tasks WHERE status = 'queued'
                       ORDER BY priority, id LIMIT 1)
           RETURNING id, payload"""
SQLITE_COMPLETE = "UPDATE tasks SET status = 'done', lease_expires_at = NULL WHERE id = ?"
LEASE_S = 30.0


def _dumps(payload: dict[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"))


class RawSqlite(System):
    BACKEND = "sqlite"
    SUPPORTS_BATCH = True
    BATCH_NOTE = "executemany of 1,000 INSERTs inside one BEGIN IMMEDIATE transaction"

    def __init__(self, name: str, where: Where) -> None:
        super().__init__(name, where)
        self.sync = "FULL" if name.endswith("_full") else "NORMAL"
        self.NOTES = (
            f"WAL, synchronous={self.sync}, busy timeout 30 s, ack = separate UPDATE "
            "status='done' transaction, 1 ms sleep when empty",
        )
        self.conn: sqlite3.Connection | None = None

    def connect(self) -> sqlite3.Connection:
        c = sqlite3.connect(self.sqlite_path, isolation_level=None, timeout=30.0)
        c.execute("PRAGMA journal_mode=WAL")
        c.execute(f"PRAGMA synchronous={self.sync}")
        return c

    def reset(self) -> None:
        self.remove_sqlite_files()
        c = self.connect()
        for statement in SQLITE_SCHEMA:
            c.execute(statement)
        c.close()

    def open_producer(self) -> None:
        self.conn = self.connect()

    def close_producer(self) -> None:
        if self.conn is not None:
            self.conn.close()

    def enqueue(self, payload: dict[str, Any]) -> None:
        c = self.conn
        assert c is not None
        c.execute("BEGIN IMMEDIATE")
        c.execute(SQLITE_INSERT, (_dumps(payload),))
        c.execute("COMMIT")

    def enqueue_batch(self, payloads: Sequence[dict[str, Any]]) -> None:
        c = self.conn
        assert c is not None
        c.execute("BEGIN IMMEDIATE")
        c.executemany(SQLITE_INSERT, [(_dumps(p),) for p in payloads])
        c.execute("COMMIT")

    def run_worker(self, variant: str, nproc: int = 1) -> None:
        c = self.connect()

        def claim() -> Any:
            c.execute("BEGIN IMMEDIATE")
            try:
                rows = c.execute(SQLITE_CLAIM, (time.time() + LEASE_S,)).fetchall()
                c.execute("COMMIT")
            except BaseException:
                if c.in_transaction:
                    c.execute("ROLLBACK")
                raise
            return rows[0] if rows else None

        def run(row: Any) -> None:
            p = json.loads(row[1])
            task_body(p["id"], p["t"])

        def complete(row: Any) -> None:
            c.execute("BEGIN IMMEDIATE")
            try:
                c.execute(SQLITE_COMPLETE, (row[0],))
                c.execute("COMMIT")
            except BaseException:
                if c.in_transaction:
                    c.execute("ROLLBACK")
                raise

        poll_loop(claim, run, complete, sqlite_busy)


PG_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS raw_tasks(
         id BIGSERIAL PRIMARY KEY,
         status TEXT NOT NULL DEFAULT 'queued',
         priority INTEGER NOT NULL DEFAULT 0,
         payload TEXT NOT NULL,
         lease_expires_at TIMESTAMPTZ)""",
    "CREATE INDEX IF NOT EXISTS raw_tasks_queued ON raw_tasks(priority, id) "
    "WHERE status = 'queued'",
)
PG_INSERT = "INSERT INTO raw_tasks(status, priority, payload) VALUES ('queued', 0, %s)"
PG_INSERT_BATCH = (
    "INSERT INTO raw_tasks(status, priority, payload) SELECT 'queued', 0, unnest(%s::text[])"
)
PG_CLAIM = """UPDATE raw_tasks SET status = 'running',
                  lease_expires_at = now() + interval '30 seconds'
           WHERE id = (SELECT id FROM raw_tasks WHERE status = 'queued'
                       ORDER BY priority, id LIMIT 1 FOR UPDATE SKIP LOCKED)
           RETURNING id, payload"""
PG_COMPLETE = "UPDATE raw_tasks SET status = 'done', lease_expires_at = NULL WHERE id = %s"


class RawPg(System):
    BACKEND = "postgresql"
    LIBRARY = "psycopg"
    REQUIRES = ("psycopg",)
    SUPPORTS_BATCH = True
    BATCH_NOTE = "one INSERT ... SELECT unnest(%s::text[]) statement per 1,000 tasks"
    NOTES = (
        "psycopg 3 sync, autocommit (each statement its own transaction), server "
        "synchronous_commit as configured, 1 ms sleep when empty (no LISTEN/NOTIFY)",
    )

    def __init__(self, name: str, where: Where) -> None:
        super().__init__(name, where)
        self.conn: Any = None

    def connect(self) -> Any:
        import psycopg

        return psycopg.connect(autocommit=True, **pg_connect_kwargs(self.pg_url))

    def reset(self) -> None:
        with self.connect() as c:
            for statement in PG_SCHEMA:
                c.execute(statement)
            c.execute("TRUNCATE raw_tasks RESTART IDENTITY")

    def open_producer(self) -> None:
        self.conn = self.connect()

    def close_producer(self) -> None:
        if self.conn is not None:
            self.conn.close()

    def enqueue(self, payload: dict[str, Any]) -> None:
        self.conn.execute(PG_INSERT, (_dumps(payload),))

    def enqueue_batch(self, payloads: Sequence[dict[str, Any]]) -> None:
        self.conn.execute(PG_INSERT_BATCH, ([_dumps(p) for p in payloads],))

    def run_worker(self, variant: str, nproc: int = 1) -> None:
        c = self.connect()

        def claim() -> Any:
            return c.execute(PG_CLAIM).fetchone()

        def run(row: Any) -> None:
            p = json.loads(row[1])
            task_body(p["id"], p["t"])

        def complete(row: Any) -> None:
            c.execute(PG_COMPLETE, (row[0],))

        poll_loop(claim, run, complete, lambda exc: False)
