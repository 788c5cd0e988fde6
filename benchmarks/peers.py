"""The Python peers, measured beside prismq-queue when the ``bench-peers`` extra is installed.

Reimplemented from the peers' harness (``../shared/peers/bench/peers/``) with the same
settings, so that every figure comes from the same run as prismq-queue's:

* ``huey_sqlite``: ``SqliteHuey`` defaults (WAL, SQLite's default ``synchronous=FULL``,
  delete-on-dequeue: at-most-once, no ack); W4 also with ``poll1ms``.
* ``persist_queue_ack``: ``SQLiteAckQueue`` (get -> unack, ack -> acked), ``auto_resume=False``
  in the workers; our polling loop (1 ms sleep when empty).
* ``litequeue``: ``LiteQueue`` (pop -> LOCKED, done -> DONE); our polling loop.
* ``procrastinate``: sync ``defer``/``batch_defer`` producer, ``app.run_worker()`` defaults.
* ``pgqueuer``: ``SyncQueries`` producer, ``PgQueuer(AsyncpgDriver).run()`` defaults.

The libraries are imported inside the methods, so this module loads without them; the
runner skips a peer whose library is missing and says so.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import shutil
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.loop import poll_loop, sqlite_busy
from benchmarks.records import task_body
from benchmarks.systems import System, pg_connect_kwargs, pg_schema_of

log = logging.getLogger("benchmarks.peers")


def _dumps(payload: dict[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"))


def _lib(module: str) -> Any:
    """A peer's module, imported when first used (the peers are an optional extra)."""
    return importlib.import_module(module)


# --- huey ---

HUEY_W4_SETTINGS: dict[str, dict[str, float]] = {
    "default": {"initial_delay": 0.1, "backoff": 1.15, "max_delay": 10.0},  # huey defaults
    "poll1ms": {"initial_delay": 0.001, "backoff": 1.0, "max_delay": 0.001},
}


def _make_huey(path: Path) -> tuple[Any, Any]:
    h = _lib("huey").SqliteHuey(name="bench", filename=str(path))

    def noop(p: dict[str, Any]) -> None:
        task_body(p["id"], p["t"])

    return h, h.task(name="noop")(noop)


class HueyPeer(System):
    BACKEND = "sqlite"
    LIBRARY = "huey"
    REQUIRES = ("huey",)
    SUPPORTS_BATCH = False
    BATCH_NOTE = (
        "n/a: no transactional batch enqueue (TaskWrapper.map() loops enqueue(), one "
        "INSERT+commit per task)"
    )
    W4_VARIANTS = ("default", "poll1ms")
    NOTES = (
        "SqliteHuey(filename=...) defaults: WAL, synchronous not set (SQLite default FULL), "
        "'begin exclusive' dequeue that DELETEs the row (at-most-once; no ack step)",
        "workers: huey Consumer(worker_type='process', periodic=False) in one process that "
        "forks the workers; logging at WARNING",
    )

    def reset(self) -> None:
        self.remove_sqlite_files()
        _make_huey(self.sqlite_path)

    def open_producer(self) -> None:
        self.huey, self.noop = _make_huey(self.sqlite_path)

    def close_producer(self) -> None:
        self.huey.storage.close()

    def enqueue(self, payload: dict[str, Any]) -> None:
        self.noop(payload)

    def worker_commands(self, nproc: int, variant: str = "default") -> list[list[str]]:
        return [[sys.executable, "-m", "benchmarks.worker", self.name, variant, str(nproc)]]

    def worker_note(self, nproc: int, variant: str = "default") -> str:
        return (
            f"1 huey consumer process + {nproc} forked worker process(es) "
            f"(worker_type='process'), polling {HUEY_W4_SETTINGS[variant]}"
        )

    def run_worker(self, variant: str, nproc: int = 1) -> None:
        consumer_class = _lib("huey.consumer").Consumer
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
        h, _ = _make_huey(self.sqlite_path)
        consumer = consumer_class(
            h, workers=nproc, worker_type="process", periodic=False, **HUEY_W4_SETTINGS[variant]
        )
        consumer.run()


# --- persist-queue ---


class PersistQueuePeer(System):
    BACKEND = "sqlite"
    LIBRARY = "persist-queue"
    REQUIRES = ("persistqueue",)
    SUPPORTS_BATCH = False
    BATCH_NOTE = (
        "n/a: SQLiteAckQueue has no batch put and forces auto_commit=True (one INSERT+commit "
        "per put)"
    )
    NOTES = (
        "SQLiteAckQueue(path) defaults: WAL, synchronous not set (SQLite default FULL), pickle "
        "serializer, busy timeout 10 s",
        "workers use auto_resume=False (the default resets every 'unack' row to 'ready' when a "
        "process opens the queue)",
        "worker loop: get(block=False) -> task -> ack(); 1 ms sleep on Empty",
    )

    @property
    def qdir(self) -> Path:
        return Path(str(self.sqlite_path) + ".d")

    def _open(self, **kwargs: Any) -> Any:
        return _lib("persistqueue").SQLiteAckQueue(str(self.qdir), db_file_name="q.db", **kwargs)

    def reset(self) -> None:
        shutil.rmtree(self.qdir, ignore_errors=True)
        self._open().close()

    def open_producer(self) -> None:
        self.q = self._open()

    def close_producer(self) -> None:
        self.q.close()

    def enqueue(self, payload: dict[str, Any]) -> None:
        self.q.put(payload)

    def run_worker(self, variant: str, nproc: int = 1) -> None:
        empty = _lib("persistqueue.exceptions").Empty
        q = self._open(auto_resume=False)

        def claim() -> Any:
            try:
                return q.get(block=False)
            except empty:
                return None

        def run(item: Any) -> None:
            task_body(item["id"], item["t"])

        poll_loop(claim, run, q.ack, sqlite_busy)


# --- litequeue ---


class LiteQueuePeer(System):
    BACKEND = "sqlite"
    LIBRARY = "litequeue"
    REQUIRES = ("litequeue",)
    SUPPORTS_BATCH = True
    BATCH_NOTE = (
        "no batch put API; measured as put() x1000 inside the public "
        "LiteQueue.transaction(mode='IMMEDIATE') context manager"
    )
    NOTES = (
        "LiteQueue(path) defaults: WAL, synchronous=NORMAL, busy timeout 5 s; pop() = BEGIN "
        "IMMEDIATE + UPDATE ... RETURNING; done() = autocommit UPDATE",
        "worker loop: pop() -> task -> done(); 1 ms sleep when pop() returns None",
    )

    def _open(self) -> Any:
        return _lib("litequeue").LiteQueue(str(self.sqlite_path))

    def reset(self) -> None:
        self.remove_sqlite_files()
        self._open().close()

    def open_producer(self) -> None:
        self.q = self._open()

    def close_producer(self) -> None:
        self.q.close()

    def enqueue(self, payload: dict[str, Any]) -> None:
        self.q.put(_dumps(payload))

    def enqueue_batch(self, payloads: Sequence[dict[str, Any]]) -> None:
        with self.q.transaction(mode="IMMEDIATE"):
            for p in payloads:
                self.q.put(_dumps(p))

    def run_worker(self, variant: str, nproc: int = 1) -> None:
        q = self._open()

        def run(msg: Any) -> None:
            p = json.loads(msg.data)
            task_body(p["id"], p["t"])

        def complete(msg: Any) -> None:
            q.done(msg.message_id)

        poll_loop(q.pop, run, complete, sqlite_busy)


# --- procrastinate ---

PROCRASTINATE_TABLES = (
    "procrastinate_events, procrastinate_periodic_defers, procrastinate_jobs, procrastinate_workers"
)


class ProcrastinatePeer(System):
    BACKEND = "postgresql"
    LIBRARY = "procrastinate"
    REQUIRES = ("procrastinate", "psycopg")
    SUPPORTS_BATCH = True
    BATCH_NOTE = "Task.batch_defer(*1,000 kwargs) (one query per batch)"
    NOTES = (
        "producer: sync Task.defer()/batch_defer() through SyncPsycopgConnector",
        "worker: app.run_worker() defaults (concurrency=1, listen_notify=True, "
        "fetch_job_polling_interval=5 s, delete_jobs='never'); the task is an async def, so it "
        "runs on the event loop; logging at WARNING",
    )

    def _conninfo(self) -> str:
        from psycopg.conninfo import make_conninfo

        return make_conninfo(**pg_connect_kwargs(self.pg_url))

    def _make_app(self, sync: bool) -> tuple[Any, Any]:
        procrastinate = _lib("procrastinate")
        connector_class = (
            procrastinate.SyncPsycopgConnector if sync else procrastinate.PsycopgConnector
        )
        app = procrastinate.App(connector=connector_class(conninfo=self._conninfo()))

        async def noop(id: int, t: float, pad: str) -> None:
            task_body(id, t)

        return app, app.task(name="noop")(noop)

    def reset(self) -> None:
        import psycopg

        kwargs = pg_connect_kwargs(self.pg_url)
        with psycopg.connect(autocommit=True, **kwargs) as c:
            exists = c.execute("SELECT to_regclass('procrastinate_jobs')").fetchone()
        if not exists or exists[0] is None:
            app, _ = self._make_app(sync=True)
            with app.open():
                app.schema_manager.apply_schema()
        with psycopg.connect(autocommit=True, **kwargs) as c:
            c.execute(f"TRUNCATE {PROCRASTINATE_TABLES} RESTART IDENTITY CASCADE")

    def open_producer(self) -> None:
        self.app, self.noop = self._make_app(sync=True)
        self.app.open()

    def close_producer(self) -> None:
        self.app.close()

    def enqueue(self, payload: dict[str, Any]) -> None:
        self.noop.defer(**payload)

    def enqueue_batch(self, payloads: Sequence[dict[str, Any]]) -> None:
        self.noop.batch_defer(*payloads)

    def run_worker(self, variant: str, nproc: int = 1) -> None:
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
        app, _ = self._make_app(sync=False)
        app.run_worker()


# --- pgqueuer ---


class PgQueuerPeer(System):
    BACKEND = "postgresql"
    LIBRARY = "pgqueuer"
    REQUIRES = ("pgqueuer", "asyncpg", "psycopg")
    SUPPORTS_BATCH = True
    BATCH_NOTE = "SyncQueries.enqueue(lists of 1,000 entrypoints/payloads/priorities) (one query)"
    NOTES = (
        "producer: SyncQueries(SyncPsycopgDriver(psycopg autocommit connection))",
        "worker: PgQueuer(AsyncpgDriver(asyncpg connection)).run() defaults (batch_size=10, "
        "LISTEN/NOTIFY, buffered status log); SIGTERM -> pgq.shutdown.set(); logging at WARNING",
        "schema installed with Queries.install() defaults",
    )

    async def _asyncpg_connect(self) -> Any:
        asyncpg = _lib("asyncpg")
        kwargs = pg_connect_kwargs(self.pg_url)
        schema = pg_schema_of(self.pg_url)
        return await asyncpg.connect(
            host=kwargs.get("host"),
            port=kwargs.get("port"),
            user=kwargs.get("user"),
            password=kwargs.get("password"),
            database=kwargs.get("dbname"),
            server_settings={"search_path": schema} if schema else None,
        )

    def reset(self) -> None:
        import psycopg

        kwargs = pg_connect_kwargs(self.pg_url)
        with psycopg.connect(autocommit=True, **kwargs) as c:
            exists = c.execute("SELECT to_regclass('pgqueuer')").fetchone()
        if not exists or exists[0] is None:
            asyncio.run(self._install())
        with psycopg.connect(autocommit=True, **kwargs) as c:
            tables = [
                row[0]
                for row in c.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
                    "AND tablename LIKE 'pgqueuer%'"
                )
            ]
            c.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")

    async def _install(self) -> None:
        pgqueuer = _lib("pgqueuer")
        conn = await self._asyncpg_connect()
        try:
            await pgqueuer.Queries(pgqueuer.AsyncpgDriver(conn)).install()
        finally:
            await conn.close()

    def open_producer(self) -> None:
        import psycopg

        driver = _lib("pgqueuer.adapters.drivers.psycopg").SyncPsycopgDriver
        queries = _lib("pgqueuer.queries").SyncQueries
        self.conn = psycopg.connect(autocommit=True, **pg_connect_kwargs(self.pg_url))
        self.q = queries(driver(self.conn))

    def close_producer(self) -> None:
        self.conn.close()

    def enqueue(self, payload: dict[str, Any]) -> None:
        self.q.enqueue("noop", _dumps(payload).encode())

    def enqueue_batch(self, payloads: Sequence[dict[str, Any]]) -> None:
        n = len(payloads)
        self.q.enqueue(["noop"] * n, [_dumps(p).encode() for p in payloads], [0] * n)

    def run_worker(self, variant: str, nproc: int = 1) -> None:
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
        logging.getLogger("pgqueuer").setLevel(logging.WARNING)
        asyncio.run(self._worker())

    async def _worker(self) -> None:
        pgqueuer = _lib("pgqueuer")
        conn = await self._asyncpg_connect()
        pgq = pgqueuer.PgQueuer(pgqueuer.AsyncpgDriver(conn))

        async def noop(job: Any) -> None:
            p = json.loads(job.payload)
            task_body(p["id"], p["t"])

        pgq.entrypoint("noop")(noop)

        loop = asyncio.get_running_loop()
        for s in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(s, pgq.shutdown.set)
        await pgq.run()
