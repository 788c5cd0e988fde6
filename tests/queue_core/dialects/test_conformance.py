"""Conformance of each Dialect method: one test body per method, run on both backends (the
``db`` fixture is parametrised), as River's riverdrivertest exercises each driver.

These call the Dialect directly (queue_core/dialects/__init__.py names the protocol), with the
cursor of the hot path's writer, so a new dialect must pass them as they are.
"""

from __future__ import annotations

import random
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from queue_core.claims import ClaimRequest
from queue_core.clock import ManualClock, utcnow
from queue_core.database import Database
from queue_core.dialects import JOB_CHECKPOINT, JOB_OPTIMIZE, Dialect, GuardedRow, LogRow
from queue_core.errors import NotSupportedOnBackend
from queue_core.repositories import LeaseRepository, TaskRepository
from queue_core.repositories._common import LOGS, TASKS
from queue_core.schemas import TaskCreate
from queue_core.states import SchedulingStrategy


def _enqueue(db: Database, n: int = 1, **fields: object) -> list[int]:
    tasks = TaskRepository(db, ManualClock())
    return [tasks.enqueue(type="t", **fields).task.task_id for _ in range(n)]  # type: ignore[arg-type]


def _logs(db: Database, task_id: int) -> list[tuple[str, str, object]]:
    with db.read() as conn:
        rows = conn.execute(
            select(LOGS.c.level, LOGS.c.message, LOGS.c.details)
            .where(LOGS.c.task_id == task_id)
            .order_by(LOGS.c.log_id)
        ).all()
    return [tuple(row) for row in rows]


def _claim(db: Database, limit: int = 1, worker: str = "w") -> list[GuardedRow]:
    claimer = db.dialect.claimer(SchedulingStrategy.FIFO, None)
    with db.raw.transaction() as cursor:
        claimed = claimer.claim(cursor, ClaimRequest(worker, ["t"], limit=limit), utcnow())
    return [GuardedRow(c.task_id, c.worker_id, c.lease_token) for c in claimed]


def test_name_and_sql(db: Database) -> None:
    dialect: Dialect = db.dialect
    assert dialect.name in ("sqlite", "postgresql")
    for strategy in SchedulingStrategy:
        assert strategy in dialect.sql.CLAIM_SQL


def test_raw_writer_commits_and_rolls_back(db: Database) -> None:
    [task_id] = _enqueue(db)
    writer = db.dialect.raw_writer(db.engine)
    sql = db.dialect.sql
    statement = sql.dbapi_sql("UPDATE task_queue SET priority = :p WHERE id = :id")

    def change_then_fail() -> None:
        with writer.transaction() as cursor:
            cursor.execute(statement, {"p": 7, "id": task_id})
            raise RuntimeError("undo")

    with pytest.raises(RuntimeError, match="undo"):
        change_then_fail()
    assert TaskRepository(db).get(task_id).priority == 100
    with writer.transaction() as cursor:
        cursor.execute(statement, {"p": 7, "id": task_id})
    assert TaskRepository(db).get(task_id).priority == 7


def test_error_classification(db: Database) -> None:
    dialect = db.dialect
    with db.engine.connect() as conn, pytest.raises(DBAPIError) as missing:
        conn.execute(text("SELECT * FROM no_such_table_here"))
    assert dialect.is_missing_schema(missing.value)
    assert not dialect.is_unavailable(missing.value)
    with db.engine.connect() as conn, pytest.raises(DBAPIError) as syntax:
        conn.execute(text("SELEC 1"))
    assert not dialect.is_missing_schema(syntax.value)
    assert not dialect.is_unavailable(syntax.value)


@pytest.mark.parametrize("strategy", list(SchedulingStrategy))
def test_claimer_leases_up_to_the_limit(db: Database, strategy: SchedulingStrategy) -> None:
    ids = _enqueue(db, 3)
    claimer = db.dialect.claimer(strategy, random.Random(1))
    assert claimer.strategy is strategy
    with db.raw.transaction() as cursor:
        claimed = claimer.claim(cursor, ClaimRequest("w", ["t"], limit=2), utcnow())
        assert claimer.claim(cursor, ClaimRequest("w", ["t"], limit=0), utcnow()) == []
    assert len(claimed) == 2
    assert {c.task_id for c in claimed} <= set(ids)
    assert all((c.attempt, c.lease_token, c.worker_id) == (1, 1, "w") for c in claimed)


def test_enqueue_logged_writes_the_row_and_its_log_or_nothing(db: Database) -> None:
    tasks = TaskRepository(db, ManualClock())
    first = tasks.enqueue(type="t", idempotency_key="k").task
    assert [m for _, m, _ in _logs(db, first.task_id)] == ["enqueued"]
    replay = tasks.enqueue(type="t", idempotency_key="k")
    assert (replay.created, replay.task.task_id) == (False, first.task_id)
    assert len(_logs(db, first.task_id)) == 1  # nothing written for the replay
    # The parameters exactly as the repository builds them (one row of ENQUEUE_SQL).
    params = tasks._new_row(TaskCreate(type="t", priority=5), utcnow()).params
    unlogged = db.dialect.enqueue_logged(db.raw, params, None, True)
    assert unlogged is not None
    assert _logs(db, unlogged) == []
    assert tasks.get(unlogged).priority == 5


KINDS = {
    "complete": ("completed", GuardedRow(0, "w", 1, None, '{"r": 1}')),
    "retry": ("queued", GuardedRow(0, "w", 1, "boom", None, utcnow() + timedelta(hours=1))),
    "fail": ("failed", GuardedRow(0, "w", 1, "boom")),
    "release": ("queued", GuardedRow(0, "w", 1)),
    "cancel": ("cancelled", GuardedRow(0, "w", 1, "stop")),
    "worker_lost": ("queued", GuardedRow(0, "w", 1, "gone")),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_set_state_if_leased_many_changes_only_matching_leases(db: Database, kind: str) -> None:
    _enqueue(db, 3, max_attempts=3)
    held = _claim(db, limit=3)
    expected, template = KINDS[kind]
    good = template._replace(task_id=held[0].task_id)
    stale = template._replace(task_id=held[1].task_id, lease_token=held[1].lease_token + 1)
    stranger = template._replace(task_id=held[2].task_id, worker_id="other")
    with db.raw.transaction() as cursor:
        matched = db.dialect.set_state_if_leased_many(
            cursor, kind, [good, stale, stranger], utcnow()
        )
    assert [(m.task_id, m.status) for m in matched] == [(good.task_id, expected)]
    assert (matched[0].attempts, matched[0].max_attempts) == (
        0 if kind == "release" else 1,
        3,
    )
    tasks = TaskRepository(db)
    assert tasks.get(stale.task_id).status.value == "leased"
    assert tasks.get(stranger.task_id).status.value == "leased"
    if kind == "complete":
        assert tasks.get(good.task_id).result == {"r": 1}


def test_expire_rechecks_the_expiry_and_renew_extends(db: Database) -> None:
    _enqueue(db, 1)
    [held] = _claim(db)
    now = utcnow()
    with db.raw.transaction() as cursor:
        # The lease (30 s) has not run out: expire matches nothing.
        assert db.dialect.set_state_if_leased_many(cursor, "expire", [held], now) == []
        renewed = db.dialect.set_state_if_leased_many(
            cursor, "renew", [held], now, now + timedelta(hours=1)
        )
    assert [(r.task_id, r.status, r.cancel_requested) for r in renewed] == [
        (held.task_id, "leased", False)
    ]
    later = now + timedelta(hours=2)
    with db.raw.transaction() as cursor:
        [expired] = db.dialect.set_state_if_leased_many(cursor, "expire", [held], later)
    assert expired.status == "queued"


def test_set_state_if_leased_many_with_an_empty_batch(db: Database) -> None:
    with db.raw.transaction() as cursor:
        assert db.dialect.set_state_if_leased_many(cursor, "complete", [], utcnow()) == []


def test_insert_logs_keeps_order_and_values(db: Database) -> None:
    [task_id] = _enqueue(db)
    now = utcnow()
    rows = [
        LogRow(task_id, now, "INFO", "first", {"n": 1, "nested": {"a": [1, 2.5, None]}}),
        LogRow(task_id, now + timedelta(seconds=1), "ERROR", "second: ünïcode '\"", None),
        LogRow(task_id, now, "DEBUG", "third", {"text": "x" * 5000}),
    ]
    with db.raw.transaction() as cursor:
        db.dialect.insert_logs(cursor, rows)
        db.dialect.insert_logs(cursor, [])
    logged = _logs(db, task_id)[1:]  # after "enqueued"
    assert logged == [(r.level, r.message, r.details) for r in rows]
    with db.read() as conn:
        times = conn.execute(
            select(LOGS.c.at_utc).where(LOGS.c.task_id == task_id).order_by(LOGS.c.log_id)
        ).scalars()
        assert list(times)[1:] == [r.at_utc for r in rows]


def test_waiter_wakes_on_wake_and_on_new_work(db: Database) -> None:
    waiter = db.dialect.new_task_waiter(db.engine)
    try:
        assert isinstance(waiter.in_loop, bool)
        waiter.wake()
        started = time.monotonic()
        assert waiter.wait(5.0) is True
        assert time.monotonic() - started < 2.0
        if waiter.in_loop:  # (LISTEN also hears other sessions on a shared server)
            assert waiter.wait(0.05) is False  # a wake counts once
        woken: list[bool] = []
        thread = threading.Thread(target=lambda: woken.append(waiter.wait(10.0)))
        thread.start()
        time.sleep(0.3)  # let it block
        with db.write() as conn:
            db.dialect.notify_new_tasks(conn)
            conn.execute(text("UPDATE task_queue_clock SET vtime = vtime"))  # a commit to see
        _enqueue(db)
        thread.join(10.0)
        assert woken == [True]
    finally:
        waiter.close()


def test_waiter_listens_and_hears_retries_and_delayed_tasks(db: Database) -> None:
    """What an idle worker may sleep through must be announced (workers/fetcher.py)."""
    waiter = db.dialect.new_task_waiter(db.engine)
    tasks = TaskRepository(db)
    try:
        waiter.wait(0.01)  # starts listening (PostgreSQL: LISTEN, and a probe got through)
        assert waiter.listening is True
        tasks.enqueue(type="t")
        [claimed] = LeaseRepository(db).claim("w", ["t"])
        changes = {
            "retry": lambda: LeaseRepository(db).fail(claimed.lease, "boom"),
            "delayed enqueue": lambda: tasks.enqueue(
                type="t", run_after_utc=utcnow() + timedelta(seconds=5)
            ),
        }
        for what, change in changes.items():
            while waiter.wait(0.05):
                pass  # what earlier steps announced
            woken: list[bool] = []
            thread = threading.Thread(target=lambda out=woken: out.append(waiter.wait(10.0)))
            thread.start()
            time.sleep(0.3)  # let it block
            started = time.monotonic()
            change()
            thread.join(10.0)
            assert woken == [True], what
            assert time.monotonic() - started < 5.0, what
    finally:
        waiter.close()
    assert waiter.listening is False


def test_reset_id_sequence_after_explicit_ids(db: Database) -> None:
    with db.write() as conn:
        conn.execute(
            TASKS.insert().values(
                id=500,
                type="t",
                payload={},
                compatibility={},
                run_after_utc=utcnow(),
            )
        )
        db.dialect.reset_id_sequence(conn, "task_queue", "id")
    [task_id] = _enqueue(db)
    assert task_id > 500


def test_maintenance_operations(db: Database, tmp_path: Path) -> None:
    dialect, engine = db.dialect, db.engine
    assert dialect.periodic_maintenance() <= {JOB_CHECKPOINT, JOB_OPTIMIZE}
    _enqueue(db, 5)
    assert dialect.analyze(engine).startswith("analyze:")
    assert dialect.optimize(engine).startswith("optimize:")
    before = dialect.storage_bytes(engine)
    assert before > 0
    dialect.vacuum(engine)
    assert dialect.storage_bytes(engine) > 0
    lines = dialect.storage_lines(engine)
    assert lines
    assert all(line.endswith(" bytes") for line in lines)
    assert dialect.wal_bytes(engine) >= 0
    path = dialect.database_file(engine)
    if path is None:  # a server database: no file, and the server checkpoints its own WAL
        assert JOB_CHECKPOINT not in dialect.periodic_maintenance()
        with pytest.raises(NotSupportedOnBackend):
            dialect.wal_checkpoint(engine, "truncate")
    else:
        assert path.is_file()
        busy, log_frames, checkpointed = dialect.wal_checkpoint(engine, "truncate")
        assert (busy, log_frames, checkpointed) == (False, 0, 0)
        assert dialect.wal_bytes(engine) == 0
    with db.read() as conn:
        assert conn.execute(select(func.count()).select_from(TASKS)).scalar_one() == 5
