"""TaskRepository on both backends: enqueue, delayed tasks, get/list, cancel, retry, stats.

Claiming is used here only to move tasks between states; the claim strategies themselves are
tested in their own modules.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select, text

from queue_core import InvalidTransition, TaskNotFound, TaskStatus
from queue_core.clock import ManualClock, utcnow
from queue_core.database import Database
from queue_core.repositories import LeaseRepository, TaskRepository, WorkerRepository
from queue_core.repositories._common import LOGS, TASKS
from queue_core.schemas import Task, TaskCreate
from queue_core.states import SchedulingStrategy
from queue_core.types import SQLITE_NOW_MICROS

START = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc)

# "The database's now plus N seconds" in raw SQL, the way a DBA or a script would write it.
RAW_NOW_PLUS = {
    "sqlite": lambda seconds: f"({SQLITE_NOW_MICROS} + {int(seconds * 1_000_000)})",
    "postgresql": lambda seconds: f"(now() + interval '{seconds} seconds')",
}


@pytest.fixture
def start_clock() -> ManualClock:
    return ManualClock(START)


def _count(db: Database, table=TASKS) -> int:  # type: ignore[no-untyped-def]
    with db.read() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def _messages(tasks: TaskRepository, task_id: int) -> list[str]:
    return [log.message for log in tasks.logs(task_id)]


# --- enqueue ---


def test_enqueue_defaults(db: Database, start_clock: ManualClock) -> None:
    tasks = TaskRepository(db, start_clock)
    result = tasks.enqueue(type="demo.echo")
    assert result.created is True
    task = result.task
    assert task.status is TaskStatus.QUEUED
    assert (task.priority, task.attempts, task.max_attempts) == (100, 0, 5)
    assert (task.payload, task.compatibility) == ({}, {})
    assert task.idempotency_key is None
    assert task.run_after_utc == task.created_at_utc == task.updated_at_utc == START
    for unset in (
        task.processing_started_utc,
        task.finished_at_utc,
        task.locked_by,
        task.lease_until_utc,
        task.error_message,
        task.result,
        task.timeout_seconds,
    ):
        assert unset is None
    assert task.cancel_requested is False
    assert tasks.get(task.task_id) == task
    [log] = tasks.logs(task.task_id)
    assert (log.message, log.level, log.at_utc) == ("enqueued", "INFO", START)
    assert log.details is not None
    assert log.details["type"] == "demo.echo"


def test_enqueue_every_field(db: Database, start_clock: ManualClock) -> None:
    tasks = TaskRepository(db, start_clock)
    later = START + timedelta(minutes=5)
    task = tasks.enqueue(
        type="media/render:v2-hd_1.x",
        payload={"n": 1, "nested": {"list": [1, "two", None, True, 2.5]}},
        priority=7,
        compatibility={"region": "us", "formats": ["video"]},
        max_attempts=9,
        run_after_utc=later,
        idempotency_key="order-1234",
        timeout_seconds=12.5,
    ).task
    assert task.type == "media/render:v2-hd_1.x"
    assert task.payload == {"n": 1, "nested": {"list": [1, "two", None, True, 2.5]}}
    assert (task.priority, task.max_attempts, task.timeout_seconds) == (7, 9, 12.5)
    assert task.compatibility == {"region": "us", "formats": ["video"]}
    assert task.idempotency_key == "order-1234"
    assert task.run_after_utc == later
    assert task.created_at_utc == START
    assert tasks.get(task.task_id) == task
    [log] = tasks.logs(task.task_id)
    assert log.details is not None
    assert log.details["run_after_utc"] == later.isoformat()
    assert log.details["idempotency_key"] == "order-1234"


def test_times_are_utc_and_keep_microseconds(db: Database, start_clock: ManualClock) -> None:
    tasks = TaskRepository(db, start_clock)
    plus_two = timezone(timedelta(hours=2))
    aware = datetime(2030, 6, 1, 14, 0, 0, 1, tzinfo=plus_two)
    naive = datetime(2030, 6, 1, 12, 0, 0, 2)  # naive means UTC
    a = tasks.enqueue(type="t", run_after_utc=aware).task
    b = tasks.enqueue(type="t", run_after_utc=naive).task
    for task, expected in ((a, datetime(2030, 6, 1, 12, 0, 0, 1)), (b, naive)):
        assert tasks.get(task.task_id) == task  # what enqueue returned is what was stored
        stored = tasks.get(task.task_id).run_after_utc
        assert stored.utcoffset() == timedelta(0)
        assert stored == expected.replace(tzinfo=timezone.utc)
        assert stored.microsecond == expected.microsecond


def test_unknown_task(db: Database) -> None:
    tasks = TaskRepository(db)
    with pytest.raises(TaskNotFound, match="task 424242 not found"):
        tasks.get(424242)
    with pytest.raises(TaskNotFound):
        tasks.logs(424242)
    with pytest.raises(TaskNotFound):
        tasks.cancel(424242)
    with pytest.raises(TaskNotFound):
        tasks.retry(424242)


# --- delayed tasks: the comparison an earlier design got wrong ---


@pytest.mark.parametrize("strategy", list(SchedulingStrategy))
def test_delayed_task_is_claimable_once_due_and_not_before(
    db: Database, start_clock: ManualClock, strategy: SchedulingStrategy
) -> None:
    tasks = TaskRepository(db, start_clock)
    leases = LeaseRepository(db, start_clock)
    delayed = tasks.enqueue(type="t", run_after_utc=START + timedelta(seconds=60)).task
    assert leases.claim("w", ["t"], strategy=strategy) == []
    start_clock.advance(59.999999)
    assert leases.claim("w", ["t"], strategy=strategy) == []
    start_clock.advance(0.000001)
    [claimed] = leases.claim("w", ["t"], strategy=strategy)
    assert claimed.task_id == delayed.task_id


def test_rows_written_by_raw_sql_defaults_compare_with_repository_times(
    db: Database, backend: str
) -> None:
    """Rows an INSERT without time columns writes (server defaults), rows with a raw SQL time,
    and rows the repository writes all compare correctly with each other in SQL."""
    now = utcnow()
    tasks = TaskRepository(db, ManualClock(now))
    past = tasks.enqueue(type="mixed", run_after_utc=now - timedelta(seconds=30)).task
    with db.write() as conn:
        conn.execute(text("INSERT INTO task_queue (type) VALUES ('mixed')"))
        conn.execute(
            text(
                "INSERT INTO task_queue (type, run_after_utc) "
                f"VALUES ('mixed', {RAW_NOW_PLUS[backend](3600)})"
            )
        )
    future = tasks.enqueue(type="mixed", run_after_utc=now + timedelta(seconds=30)).task
    with db.read() as conn:
        order = conn.execute(
            text("SELECT id FROM task_queue WHERE type = 'mixed' ORDER BY run_after_utc")
        ).scalars()
        raw_now_id, raw_later_id = past.task_id + 1, past.task_id + 2
        assert list(order) == [past.task_id, raw_now_id, future.task_id, raw_later_id]

    raw = tasks.get(raw_now_id)
    assert (raw.status, raw.attempts, raw.priority) == (TaskStatus.QUEUED, 0, 100)
    assert raw.run_after_utc.utcoffset() == timedelta(0)
    assert abs(raw.run_after_utc - now) < timedelta(seconds=60)
    assert raw.created_at_utc == raw.updated_at_utc == raw.run_after_utc
    later = tasks.get(raw_later_id).run_after_utc
    assert timedelta(minutes=59) < later - raw.run_after_utc <= timedelta(minutes=61)

    clock = ManualClock(now + timedelta(seconds=1))
    leases = LeaseRepository(db, clock)
    claimed = leases.claim("w", ["mixed"], limit=10, strategy=SchedulingStrategy.FIFO)
    assert sorted(c.task_id for c in claimed) == [past.task_id, raw_now_id]
    clock.advance(60)
    [c] = leases.claim("w", ["mixed"], limit=10, strategy=SchedulingStrategy.FIFO)
    assert c.task_id == future.task_id
    clock.advance(2 * 3600)
    [c] = leases.claim("w", ["mixed"], limit=10)
    assert c.task_id == raw_later_id


def test_stats_age_of_a_raw_sql_row(db: Database) -> None:
    with db.write() as conn:
        conn.execute(text("INSERT INTO task_queue (type) VALUES ('raw')"))
    stats = TaskRepository(db, ManualClock(utcnow() + timedelta(seconds=10))).stats()
    assert stats.oldest_queued_age_seconds is not None
    assert 9 <= stats.oldest_queued_age_seconds <= 70


# --- get and list ---


def test_list_filters_newest_first_and_before_id_paging(db: Database, clock: ManualClock) -> None:
    tasks = TaskRepository(db, clock)
    ids = [
        tasks.enqueue(type="a" if i % 3 else "b", priority=i + 1).task.task_id for i in range(25)
    ]
    tasks.cancel(ids[4])

    everything = tasks.list(limit=1000)
    assert [t.task_id for t in everything] == sorted(ids, reverse=True)

    pages: list[list[int]] = []
    before: int | None = None
    while True:
        page = [t.task_id for t in tasks.list(limit=10, before_id=before)]
        if not page:
            break
        pages.append(page)
        before = page[-1]
    assert [len(p) for p in pages] == [10, 10, 5]
    assert [i for p in pages for i in p] == sorted(ids, reverse=True)

    only_b = tasks.list(type="b")
    assert {t.type for t in only_b} == {"b"}
    assert [t.task_id for t in only_b] == sorted((i for i in ids[::3]), reverse=True)
    assert [t.task_id for t in tasks.list(status="cancelled")] == [ids[4]]
    assert [t.task_id for t in tasks.list(status=TaskStatus.CANCELLED, type="a")] == [ids[4]]
    assert tasks.list(status=TaskStatus.CANCELLED, type="b") == []
    assert len(tasks.list(status="queued")) == 24
    assert [t.task_id for t in tasks.list(type="a", limit=2, before_id=ids[5])] == [
        ids[4],
        ids[2],
    ]
    assert len(tasks.list(limit=0)) == 1  # clamped to at least one
    with pytest.raises(ValueError, match="bogus"):
        tasks.list(status="bogus")


def test_list_returns_detached_task_objects(db: Database, clock: ManualClock) -> None:
    tasks = TaskRepository(db, clock)
    tasks.enqueue(type="a", payload={"k": [1, 2]})
    [task] = tasks.list()
    db.dispose()  # nothing lazy is left to load
    assert isinstance(task, Task)
    assert task.payload == {"k": [1, 2]}
    assert Task.model_validate(task.model_dump()) == task


# --- cancel ---


def test_cancel_queued_is_immediate(db: Database, clock: ManualClock) -> None:
    tasks = TaskRepository(db, clock)
    task_id = tasks.enqueue(type="t").task.task_id
    clock.advance(3)
    result = tasks.cancel(task_id)
    assert result.immediate is True
    assert result.task.status is TaskStatus.CANCELLED
    assert result.task.finished_at_utc == result.task.updated_at_utc == clock()
    assert tasks.get(task_id) == result.task
    assert _messages(tasks, task_id) == ["enqueued", "cancelled"]
    assert LeaseRepository(db, clock).claim("w", ["t"]) == []


def test_cancel_leased_requests_cancellation(db: Database, clock: ManualClock) -> None:
    tasks = TaskRepository(db, clock)
    leases = LeaseRepository(db, clock)
    task_id = tasks.enqueue(type="t").task.task_id
    [claimed] = leases.claim("w1", ["t"])
    result = tasks.cancel(task_id)
    assert result.immediate is False
    assert result.task.status is TaskStatus.LEASED
    assert result.task.cancel_requested is True
    assert result.task.locked_by == "w1"
    assert leases.is_cancel_requested(claimed.lease) is True
    assert _messages(tasks, task_id) == ["enqueued", "leased", "cancel requested"]
    [log] = [log for log in tasks.logs(task_id) if log.message == "cancel requested"]
    assert log.details == {"event": "cancel_requested", "worker_id": "w1", "attempt": 1}


@pytest.mark.parametrize("terminal", ["completed", "failed", "cancelled"])
def test_cancel_terminal_is_an_invalid_transition(
    db: Database, clock: ManualClock, terminal: str
) -> None:
    tasks = TaskRepository(db, clock)
    task_id = _task_in_state(db, clock, terminal)
    before = tasks.get(task_id)
    with pytest.raises(InvalidTransition, match=f"cannot cancel task {task_id}: it is {terminal}"):
        tasks.cancel(task_id)
    assert tasks.get(task_id) == before


# --- retry ---


@pytest.mark.parametrize("state", ["failed", "cancelled"])
def test_retry_requeues_with_fresh_attempts(db: Database, clock: ManualClock, state: str) -> None:
    tasks = TaskRepository(db, clock)
    task_id = _task_in_state(db, clock, state)
    clock.advance(100)
    task = tasks.retry(task_id)
    assert task.status is TaskStatus.QUEUED
    assert task.attempts == 0
    assert task.run_after_utc == task.updated_at_utc == clock()
    assert (task.finished_at_utc, task.locked_by, task.lease_until_utc) == (None, None, None)
    assert task.cancel_requested is False
    assert task.result is None
    assert tasks.get(task_id) == task
    assert _messages(tasks, task_id)[-1] == "requeued by operator"
    [claimed] = LeaseRepository(db, clock).claim("w", ["t"])
    assert (claimed.task_id, claimed.attempt) == (task_id, 1)


@pytest.mark.parametrize("state", ["queued", "leased", "completed"])
def test_retry_other_states_is_an_invalid_transition(
    db: Database, clock: ManualClock, state: str
) -> None:
    tasks = TaskRepository(db, clock)
    task_id = _task_in_state(db, clock, state)
    before = tasks.get(task_id)
    with pytest.raises(InvalidTransition, match=f"cannot retry task {task_id}: it is {state}"):
        tasks.retry(task_id)
    assert tasks.get(task_id) == before


def _task_in_state(db: Database, clock: ManualClock, state: str, type_: str = "t") -> int:
    tasks = TaskRepository(db, clock)
    leases = LeaseRepository(db, clock)
    task_id = tasks.enqueue(type=type_).task.task_id
    if state == "queued":
        return task_id
    if state == "cancelled":
        tasks.cancel(task_id)
        return task_id
    # FIFO claims the oldest due task of the type: callers create earlier tasks of a shared
    # type in a state other than queued.
    [claimed] = leases.claim("w", [type_], strategy=SchedulingStrategy.FIFO)
    assert claimed.task_id == task_id
    if state == "completed":
        leases.complete(claimed.lease, {"ok": True})
    elif state == "failed":
        leases.fail(claimed.lease, "boom", permanent=True)
    assert tasks.get(task_id).status.value == state
    return task_id


# --- stats ---


def test_stats_counts_by_status_and_type(db: Database, clock: ManualClock) -> None:
    tasks = TaskRepository(db, clock)
    empty = tasks.stats()
    assert empty.total_tasks == 0
    assert empty.oldest_queued_age_seconds is None
    assert empty.by_type == {}

    _task_in_state(db, clock, "leased", "a")
    _task_in_state(db, clock, "queued", "a")
    _task_in_state(db, clock, "completed", "b")
    _task_in_state(db, clock, "failed", "b")
    _task_in_state(db, clock, "cancelled", "c")
    tasks.enqueue(type="c", run_after_utc=clock() + timedelta(hours=1))
    stats = tasks.stats()
    assert stats.total_tasks == 6
    assert (stats.queued_tasks, stats.leased_tasks, stats.processing_tasks) == (2, 1, 1)
    assert (stats.completed_tasks, stats.failed_tasks, stats.cancelled_tasks) == (1, 1, 1)
    assert stats.processing_tasks == stats.leased_tasks
    assert stats.by_type == {
        "a": {"queued": 1, "leased": 1},
        "b": {"completed": 1, "failed": 1},
        "c": {"cancelled": 1, "queued": 1},
    }
    assert set(stats.model_dump()) == {
        "total_tasks",
        "queued_tasks",
        "leased_tasks",
        "processing_tasks",
        "completed_tasks",
        "failed_tasks",
        "cancelled_tasks",
        "oldest_queued_age_seconds",
        "by_type",
        "workers_active",
    }


def test_stats_oldest_queued_age_counts_from_when_the_task_became_due(
    db: Database, start_clock: ManualClock
) -> None:
    tasks = TaskRepository(db, start_clock)
    tasks.enqueue(type="t", run_after_utc=START + timedelta(seconds=100))
    assert tasks.stats().oldest_queued_age_seconds is None  # delayed, not due yet
    start_clock.advance(142.5)
    assert tasks.stats().oldest_queued_age_seconds == pytest.approx(42.5)
    tasks.enqueue(type="t")  # due now; the older one still counts
    start_clock.advance(10)
    assert tasks.stats().oldest_queued_age_seconds == pytest.approx(52.5)


def test_stats_workers_active(db: Database, clock: ManualClock) -> None:
    tasks = TaskRepository(db, clock)
    workers = WorkerRepository(db, clock)
    workers.register("w1", capabilities={"gpu": True}, task_types=["t"])
    workers.register("w2")
    workers.register("w3")
    assert tasks.stats().workers_active == 3
    workers.stop("w3")
    assert tasks.stats().workers_active == 2
    clock.advance(db.settings.worker_stale_after_seconds - 1)
    workers.heartbeat("w1")
    clock.advance(2)  # w2 is now stale, w1 is not
    assert tasks.stats().workers_active == 1
    assert {w.worker_id: w.status for w in workers.list()} == {
        "w1": "active",
        "w2": "stale",
        "w3": "stale",
    }


# --- logs: written in the same transaction as the transition ---

REFUSE_LOGS = {
    "sqlite": [
        "CREATE TRIGGER refuse_logs BEFORE INSERT ON task_logs "
        "BEGIN SELECT RAISE(ABORT, 'log write refused'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION refuse_logs() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'log write refused'; END $$",
        "CREATE TRIGGER refuse_logs BEFORE INSERT ON task_logs "
        "FOR EACH ROW EXECUTE FUNCTION refuse_logs()",
    ],
}
ALLOW_LOGS = {
    "sqlite": ["DROP TRIGGER refuse_logs"],
    "postgresql": ["DROP TRIGGER refuse_logs ON task_logs", "DROP FUNCTION refuse_logs()"],
}


def _run(db: Database, statements: list[str]) -> None:
    with db.write() as conn:
        for statement in statements:
            conn.exec_driver_sql(statement)


def test_every_transition_writes_its_log_in_the_same_transaction(
    db: Database, clock: ManualClock, backend: str
) -> None:
    """With task_logs refusing inserts, no transition may happen without its log row."""
    tasks = TaskRepository(db, clock)
    leases = LeaseRepository(db, clock)
    queued = tasks.enqueue(type="t").task.task_id
    leased_id = tasks.enqueue(type="l").task.task_id
    [lease] = leases.claim("w", ["l"])
    failed = _task_in_state(db, clock, "failed", "f")
    snapshot = _rows(db)
    logs_before = _count(db, LOGS)

    _run(db, REFUSE_LOGS[backend])
    try:
        attempts: dict[str, Callable[[], object]] = {
            "enqueue": lambda: tasks.enqueue(type="t"),
            "enqueue_many": lambda: tasks.enqueue_many([TaskCreate(type="t")] * 3),
            "cancel queued": lambda: tasks.cancel(queued),
            "cancel leased": lambda: tasks.cancel(leased_id),
            "retry": lambda: tasks.retry(failed),
            "claim": lambda: leases.claim("w2", ["t"]),
            "complete": lambda: leases.complete(lease.lease, "done"),
            "fail": lambda: leases.fail(lease.lease, "boom"),
            "release": lambda: leases.release(lease.lease),
        }
        for name, attempt in attempts.items():
            with pytest.raises(Exception, match="log write refused"):
                attempt()
            assert _rows(db) == snapshot, f"{name} changed a task without its log row"
    finally:
        _run(db, ALLOW_LOGS[backend])
    assert _count(db, LOGS) == logs_before

    # And with logs allowed again, each of those transitions leaves exactly one row.
    for task_id, action, message in (
        (leased_id, lambda: tasks.cancel(leased_id), "cancel requested"),
        # Its cancellation was requested just above: the return ends it cancelled (CONTRACT §4).
        (leased_id, lambda: leases.complete(lease.lease, "done"), "cancelled"),
        (failed, lambda: tasks.retry(failed), "requeued by operator"),
        (queued, lambda: tasks.cancel(queued), "cancelled"),
    ):
        before = _count(db, LOGS)
        action()
        assert _count(db, LOGS) == before + 1
        assert _messages(tasks, task_id)[-1] == message


def _rows(db: Database) -> list[tuple[object, ...]]:
    with db.read() as conn:
        return [tuple(row) for row in conn.execute(select(TASKS).order_by(TASKS.c.id))]


# --- enqueue_many: all or nothing ---


def test_enqueue_many_keeps_order_and_logs_each(db: Database, clock: ManualClock) -> None:
    tasks = TaskRepository(db, clock)
    assert tasks.enqueue_many([]) == []
    specs = [TaskCreate(type=f"t{i}", payload={"i": i}, priority=1000 - i) for i in range(50)]
    created = tasks.enqueue_many(specs)
    assert [t.payload["i"] for t in created] == list(range(50))
    assert [t.type for t in created] == [s.type for s in specs]
    assert [t.task_id for t in created] == sorted(t.task_id for t in created)
    for task in created:
        assert tasks.get(task.task_id) == task
        assert _messages(tasks, task.task_id) == ["enqueued"]


def test_enqueue_many_with_keys_replays_and_dedups(db: Database, clock: ManualClock) -> None:
    tasks = TaskRepository(db, clock)
    first = tasks.enqueue(type="t", payload={"a": 1}, idempotency_key="k1").task
    batch = tasks.enqueue_many(
        [
            TaskCreate(type="t", payload={"a": 1}, idempotency_key="k1"),  # replay
            TaskCreate(type="t", payload={"b": 2}, idempotency_key="k2"),
            TaskCreate(type="t", payload={"b": 2}, idempotency_key="k2"),  # same batch
            TaskCreate(type="t", payload={"c": 3}),
        ]
    )
    assert batch[0] == first
    assert batch[1] == batch[2]
    assert _count(db) == 3
    assert _count(db, LOGS) == 3


def test_enqueue_many_is_all_or_nothing(db: Database, clock: ManualClock) -> None:
    from queue_core.errors import IdempotencyConflict
    from queue_core.repositories import PayloadTooLarge

    small = Database(db.url, settings=db.settings.model_copy(update={"payload_max_bytes": 64}))
    try:
        tasks = TaskRepository(small, clock)
        tasks.enqueue(type="t", payload={"a": 1}, idempotency_key="taken")
        tasks_before, logs_before = _count(db), _count(db, LOGS)
        good = [TaskCreate(type="t", payload={"i": i}) for i in range(5)]
        keyed = [TaskCreate(type="t", idempotency_key=f"new-{i}") for i in range(5)]

        with pytest.raises(PayloadTooLarge):
            tasks.enqueue_many([*good, TaskCreate(type="t", payload={"s": "x" * 100}), *good])
        with pytest.raises(IdempotencyConflict):
            tasks.enqueue_many(
                [*keyed, TaskCreate(type="t", payload={"a": 2}, idempotency_key="taken")]
            )
        with pytest.raises(IdempotencyConflict):
            tasks.enqueue_many(
                [
                    *good,
                    TaskCreate(type="t", idempotency_key="dup"),
                    TaskCreate(type="other", idempotency_key="dup"),
                ]
            )
        assert (_count(db), _count(db, LOGS)) == (tasks_before, logs_before)
        assert tasks.list(type="t", limit=1000)[0].idempotency_key == "taken"
    finally:
        small.dispose()
