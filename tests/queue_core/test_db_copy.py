"""`prismq-queue db copy --to URL`: SQLite -> PostgreSQL -> SQLite, resume, refusals."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from queue_core.cli import main
from queue_core.clock import ManualClock
from queue_core.database import Database
from queue_core.dbcopy import CopyError, copy_queue
from queue_core.repositories import LeaseRepository, TaskRepository, WorkerRepository
from queue_core.schemas import Task, TaskCreate
from queue_core.settings import sqlite_url_for

SLOW_TASKS = 100_000


@pytest.fixture
def pg_blank(pg_schema_url: str) -> Iterator[str]:
    """A PostgreSQL schema of its own with no tables yet: `db copy` migrates it."""
    schema = f"prismq_copy_{uuid.uuid4().hex[:10]}"
    admin = Database(pg_schema_url)
    try:
        with admin.engine.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
        url = make_url(admin.url).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.engine.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def _fill(url: str, clock: ManualClock) -> list[int]:
    """A queue with a task in every state, logs, odd payloads and a (stopped) worker."""
    with Database(url) as db:
        tasks = TaskRepository(db, clock)
        leases = LeaseRepository(db, clock)
        workers = WorkerRepository(db, clock)
        workers.register("old-worker", capabilities={"region": "eu", "gpu": [1, 2]})
        workers.stop("old-worker")
        ids = [
            tasks.enqueue(
                type="copy.t",
                payload={"n": n, "text": "žluťoučký kůň \u2603", "f": 0.1 + n, "nested": [n, {}]},
                priority=1 + n % 7,
                compatibility={"region": "eu"} if n % 2 else {},
                idempotency_key=f"key-{n}" if n % 3 == 0 else None,
            ).task.task_id
            for n in range(12)
        ]
        claimed = leases.claim("old-worker", ["copy.t"], lease_seconds=30, limit=4)
        leases.complete(claimed[0].lease, {"answer": 42, "f": 1.5})
        leases.complete(claimed[1].lease, 2.0)
        leases.fail(claimed[2].lease, "boom", permanent=True)
        # claimed[3] stays leased: a dead worker's lease, recovered on the target later
        tasks.cancel(ids[-1])
        clock.advance(1.25)
        tasks.enqueue(type="copy.delayed", payload={}, run_after_utc=clock() + timedelta(hours=1))
    return ids


def _snapshot(url: str) -> tuple[list[Task], list[list[object]], list[object]]:
    with Database(url) as db:
        tasks = TaskRepository(db)
        every = sorted(tasks.list(limit=1000), key=lambda t: t.task_id)
        logs = [
            [(log.message, log.at_utc, log.details) for log in tasks.logs(t.task_id)] for t in every
        ]
        workers = [
            (w.worker_id, w.capabilities, w.heartbeat_utc) for w in WorkerRepository(db).list()
        ]
    return every, logs, workers


@pytest.mark.postgres
def test_round_trip_sqlite_postgres_sqlite(tmp_path: Path, sqlite_url: str, pg_blank: str) -> None:
    clock = ManualClock()
    _fill(sqlite_url, clock)
    before = _snapshot(sqlite_url)

    with Database(sqlite_url) as src, Database(pg_blank) as dst:
        there = copy_queue(src, dst)
    assert _snapshot(pg_blank) == before
    back_url = sqlite_url_for(tmp_path / "back.db")
    with Database(pg_blank) as src, Database(back_url) as dst:
        back = copy_queue(src, dst)
    assert _snapshot(back_url) == before
    assert back.tasks_checksum == there.tasks_checksum
    assert there.tasks_verified == len(before[0]) == 13

    # The ids continue after the copied ones on both backends (PostgreSQL's sequence reset).
    for url in (pg_blank, back_url):
        with Database(url) as db:
            new = TaskRepository(db).enqueue(type="copy.t", payload={}).task
            assert new.task_id == max(t.task_id for t in before[0]) + 1


def test_interrupted_copy_resumes(tmp_path: Path, sqlite_url: str) -> None:
    clock = ManualClock()
    with Database(sqlite_url) as db:
        TaskRepository(db, clock).enqueue_many(
            [TaskCreate(type="copy.t", payload={"n": n}) for n in range(250)]
        )
    target_url = sqlite_url_for(tmp_path / "target.db")

    class Interrupted(Exception):
        pass

    def stop_after_two_batches(table: str, done: int, total: int) -> None:
        if table == "task_queue" and done >= 100:
            raise Interrupted

    with Database(sqlite_url) as src, Database(target_url) as dst:
        with pytest.raises(Interrupted):
            copy_queue(src, dst, batch_size=50, progress=stop_after_two_batches)
        with dst.read() as conn:
            assert conn.execute(text("SELECT count(*) FROM task_queue")).scalar_one() == 100
        report = copy_queue(src, dst, batch_size=50)
    tasks = next(t for t in report.tables if t.name == "task_queue")
    assert (tasks.copied, tasks.target_rows, report.tasks_verified) == (150, 250, 250)
    assert _snapshot(target_url) == _snapshot(sqlite_url)


def test_refuses_a_target_that_is_not_a_copy_of_the_source(tmp_path: Path, sqlite_url: str) -> None:
    other = sqlite_url_for(tmp_path / "other.db")
    for url, n in ((sqlite_url, 3), (other, 2)):
        with Database(url) as db:
            from queue_core import migrate

            migrate.upgrade(db)
            for i in range(n):
                TaskRepository(db).enqueue(
                    type="copy.t", payload={"src": url == sqlite_url, "i": i}
                )
    with Database(sqlite_url) as src, Database(other) as dst, pytest.raises(CopyError) as err:
        copy_queue(src, dst)
    assert "task_queue" in str(err.value)


def test_refuses_while_workers_are_active_unless_forced(tmp_path: Path, sqlite_url: str) -> None:
    with Database(sqlite_url) as db:
        WorkerRepository(db).register("busy-worker")
        TaskRepository(db).enqueue(type="copy.t", payload={})
    target = sqlite_url_for(tmp_path / "target.db")
    with Database(sqlite_url) as src, Database(target) as dst:
        with pytest.raises(CopyError, match="busy-worker"):
            copy_queue(src, dst)
        assert copy_queue(src, dst, force=True).tasks_verified == 1


def test_cli_copies_and_reports(
    tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with Database(sqlite_url) as db:
        TaskRepository(db).enqueue(type="copy.t", payload={"x": 1})
    target = sqlite_url_for(tmp_path / "cli.db")
    assert main(["db", "copy", "--database-url", sqlite_url, "--to", target]) == 0
    out = capsys.readouterr().out
    assert "task_queue: 1 rows" in out
    assert "verified 1 tasks, checksum sha256:" in out


def test_cli_bad_input_is_one_line(sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "copy", "--database-url", sqlite_url, "--to", "not a url"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert err.count("\n") == 1
    assert main(["db", "copy", "--database-url", sqlite_url, "--to", sqlite_url]) == 1
    assert "same database" in capsys.readouterr().err
    with Database(sqlite_url) as db:
        WorkerRepository(db).register("w-active")
    target = sqlite_url_for(Path(make_url(sqlite_url).database or "").with_name("t.db"))
    assert main(["db", "copy", "--database-url", sqlite_url, "--to", target]) == 1
    err = capsys.readouterr().err
    assert "--force" in err
    assert err.count("\n") == 1


@pytest.mark.slow
@pytest.mark.postgres
def test_hundred_thousand_tasks_round_trip(tmp_path: Path, sqlite_url: str, pg_blank: str) -> None:
    with Database(sqlite_url) as db, db.write() as conn:
        # Bulk-load with one statement: enqueueing 100,000 tasks one by one is not the subject.
        conn.execute(
            text(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :count) "
                "INSERT INTO task_queue (type, payload, priority) "
                "SELECT 'bulk.t', json_object('i', i, 's', hex(randomblob(8))), 1 + i % 1000 FROM n"
            ),
            {"count": SLOW_TASKS},
        )
    back_url = sqlite_url_for(tmp_path / "back.db")
    with Database(sqlite_url) as src, Database(pg_blank) as dst:
        there = copy_queue(src, dst)
    with Database(pg_blank) as src, Database(back_url) as dst:
        back = copy_queue(src, dst)
    assert there.tasks_verified == back.tasks_verified == SLOW_TASKS
    assert there.tasks_checksum == back.tasks_checksum
    assert os.path.getsize(make_url(back_url).database or "") > 0
