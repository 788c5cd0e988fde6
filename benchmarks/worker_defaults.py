"""The measurement behind the worker's prefetch and flush-interval defaults (issue 11 C).

    python -m benchmarks.worker_defaults [--tasks 3000] [--processes 1 4] [--prefetch 0 5 10 20]
        [--postgres URL]

For each backend, process count and prefetch: start the worker processes (``--concurrency 1``,
the CLI defaults otherwise), wait until they are ready, enqueue ``--tasks`` no-op tasks in one
transaction, and time until every one is completed. Prints tasks/s per setting. Process start
is not timed. The machine's load matters: compare settings within one run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, make_url, text

from queue_core import migrate
from queue_core.database import Database
from queue_core.repositories import TaskRepository
from queue_core.schemas import TaskCreate
from queue_core.settings import sqlite_url_for
from workers import task

REPO_ROOT = Path(__file__).resolve().parents[1]
TASK_TYPE = "bench.defaults"


@task(TASK_TYPE)
def work(payload: dict[str, float]) -> None:
    """The measured task: returns at once, or after ``payload["seconds"]``."""
    if payload.get("seconds"):
        time.sleep(payload["seconds"])


def _workers(url: str, count: int, args: list[str], logs: Path) -> list[subprocess.Popen[bytes]]:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    procs = []
    for n in range(count):
        log = (logs / f"w{n}.log").open("wb")
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "queue_core.cli",
                    "worker",
                    "--import",
                    "workers.demo",
                    "--database-url",
                    url,
                    "--no-maintenance",
                    *args,
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO_ROOT,
            )
        )
    deadline = time.monotonic() + 120
    for n in range(count):
        while "worker started" not in (logs / f"w{n}.log").read_text(errors="replace"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"worker {n} did not start")
            time.sleep(0.05)
    return procs


def measure(url: str, tasks: int, processes: int, args: list[str], seconds: float = 0.0) -> float:
    db = Database(url)
    repo = TaskRepository(db)
    with tempfile.TemporaryDirectory() as logs:
        procs = _workers(url, processes, args, Path(logs))
        try:
            started = time.monotonic()
            repo.enqueue_many(
                [TaskCreate(type="demo.echo", payload={"n": i}) for i in range(tasks)]
            )
            while repo.stats().completed_tasks < tasks:
                time.sleep(0.02)
            elapsed = time.monotonic() - started
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(60)
            db.dispose()
            for log in sorted(Path(logs).glob("*.log")):
                for line in log.read_text(errors="replace").splitlines():
                    if "WARNING" in line or "ERROR" in line:
                        print(f"  {log.name}: {line[:200]}", flush=True)
    return tasks / elapsed


def _fresh_sqlite(directory: Path) -> str:
    url = sqlite_url_for(directory / f"{uuid.uuid4().hex[:8]}.db")
    db = Database(url)
    migrate.upgrade(db)
    db.dispose()
    return url


def _fresh_postgres(base: str) -> tuple[str, str]:
    schema = f"prismq_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(Database(base).url)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    admin.dispose()
    url = make_url(Database(base).url).update_query_dict({"options": f"-csearch_path={schema}"})
    rendered = url.render_as_string(hide_password=False)
    db = Database(rendered)
    migrate.upgrade(db)
    db.dispose()
    return rendered, schema


def _drop_postgres(base: str, schema: str) -> None:
    admin = create_engine(Database(base).url)
    with admin.begin() as conn:
        conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=3000)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--prefetch", type=int, nargs="+", default=[0, 5, 10, 20])
    parser.add_argument("--postgres", default=None, help="also measure on this PostgreSQL URL")
    parser.add_argument("--seconds", type=float, default=0.0, help="each task sleeps this long")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="worker options")
    options = parser.parse_args()
    backends = ["sqlite"] + (["postgresql"] if options.postgres else [])
    with tempfile.TemporaryDirectory() as directory:
        for backend in backends:
            for processes in options.processes:
                for prefetch in [p for p in options.prefetch for _ in range(options.repeat)]:
                    schema = None
                    if backend == "sqlite":
                        url = _fresh_sqlite(Path(directory))
                    else:
                        url, schema = _fresh_postgres(options.postgres)
                    try:
                        rate = measure(
                            url,
                            options.tasks,
                            processes,
                            ["--prefetch", str(prefetch), *options.extra],
                            options.seconds,
                        )
                    finally:
                        if schema:
                            _drop_postgres(options.postgres, schema)
                    print(
                        f"{backend:10} processes={processes} prefetch={prefetch:3}: "
                        f"{rate:8.0f} tasks/s",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
