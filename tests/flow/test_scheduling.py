"""Periodic schedules (CONTRACT §9): cron in a time zone with DST as cron does, catch-up
policies, a new schedule starting at its first due time, and exactly one task per due time
whatever the runners do, guarded in the database. Clocks are injected (ManualClock)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from queue_core.clock import ManualClock
from queue_core.database import Database
from queue_core.errors import InvalidSchedule, ScheduleExists, ScheduleNotFound
from queue_core.repositories import ScheduleRepository, TaskRepository
from queue_core.scheduling import CatchUp, Cron, due_key, plan_due

UTC = timezone.utc


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def _walk(cron: Cron, start: datetime, end: datetime) -> list[datetime]:
    """Due times a scheduler ticking every minute from start to end enqueues."""
    clock = ManualClock(start)
    next_due = cron.next_after(start)
    seen: list[datetime] = []
    while clock.now < end:
        clock.advance(60)
        plan = plan_due(cron, next_due, clock.now, CatchUp.LATEST)
        seen += plan.enqueue
        next_due = plan.next_due
    return seen


# --- DST, as cron does (Europe/Prague: +01:00 in winter, +02:00 in summer) ---


def test_spring_forward_a_skipped_time_runs_right_after_the_jump() -> None:
    # 2026-03-29: 02:00 local jumps to 03:00. A job at 02:30 has no 02:30 that day.
    cron = Cron("30 2 * * *", "Europe/Prague")
    seen = _walk(cron, _utc(2026, 3, 27, 12), _utc(2026, 3, 30, 12))
    assert seen == [
        _utc(2026, 3, 28, 1, 30),  # 02:30 +01:00
        _utc(2026, 3, 29, 1, 0),  # 03:00 +02:00, right after the jump
        _utc(2026, 3, 30, 0, 30),  # 02:30 +02:00
    ]


def test_fall_back_a_fixed_time_runs_once_a_wildcard_hour_twice() -> None:
    # 2026-10-25: 03:00 local falls back to 02:00; 02:00-02:59 happens twice.
    fixed = Cron("30 2 * * *", "Europe/Prague")
    assert _walk(fixed, _utc(2026, 10, 24, 12), _utc(2026, 10, 25, 12)) == [
        _utc(2026, 10, 25, 0, 30)  # the first 02:30 (+02:00) only
    ]
    every_half_hour = Cron("*/30 * * * *", "Europe/Prague")
    seen = _walk(every_half_hour, _utc(2026, 10, 24, 23, 50), _utc(2026, 10, 25, 1, 50))
    # 01:30 then 02:00, 02:30 (+02:00) and 02:00, 02:30 (+01:00): four runs in two hours.
    assert seen == [_utc(2026, 10, 25, 0, 0) + timedelta(minutes=30 * i) for i in range(4)]
    assert len(set(seen)) == len(seen)


def test_utc_schedule_ignores_dst() -> None:
    cron = Cron("0 6 * * *")
    assert cron.next_after(_utc(2026, 3, 29, 0)) == _utc(2026, 3, 29, 6)


# --- catch-up ---


def test_catch_up_policies_after_a_long_outage() -> None:
    cron = Cron("0 * * * *")  # hourly
    next_due = _utc(2026, 1, 1, 1)
    now = _utc(2026, 1, 1, 5, 0, 30)  # 01:00 .. 05:00 are due; 05:00 is on time
    latest = plan_due(cron, next_due, now, "latest")
    assert latest.enqueue == [_utc(2026, 1, 1, 5)]
    assert latest.next_due == _utc(2026, 1, 1, 6)
    assert plan_due(cron, next_due, now, "none").enqueue == [_utc(2026, 1, 1, 5)]
    assert plan_due(cron, next_due, now, "all").enqueue == [
        _utc(2026, 1, 1, h) for h in range(1, 6)
    ]
    later = _utc(2026, 1, 1, 5, 30)  # every due time is missed now
    assert plan_due(cron, next_due, later, "latest").enqueue == [_utc(2026, 1, 1, 5)]
    assert plan_due(cron, next_due, later, "none").enqueue == []


def test_catch_up_all_is_capped_at_100_and_a_year_idle_is_cheap() -> None:
    cron = Cron("* * * * *")
    next_due = _utc(2025, 1, 1)
    now = _utc(2026, 1, 1, 0, 0, 30)
    plan = plan_due(cron, next_due, now, "all")
    assert len(plan.enqueue) == 100
    assert plan.enqueue[-1] == _utc(2026, 1, 1)
    assert plan.enqueue == sorted(plan.enqueue)
    assert plan.next_due == _utc(2026, 1, 1, 0, 1)
    assert plan_due(cron, next_due, now, "latest").enqueue == [_utc(2026, 1, 1)]


def test_invalid_cron_and_time_zone() -> None:
    for expression in ("61 * * * *", "* * * *", "@daily", "* * * * * *", "0 0 31 2 *"):
        with pytest.raises(InvalidSchedule):
            Cron(expression)
    with pytest.raises(InvalidSchedule):
        Cron("* * * * *", "Mars/Olympus")


# --- the repository, on both backends ---


@pytest.fixture
def repos(db: Database, clock: ManualClock) -> tuple[ScheduleRepository, TaskRepository]:
    clock.now = _utc(2026, 1, 1, 10, 0, 30)
    tasks = TaskRepository(db, clock)
    return ScheduleRepository(db, clock, tasks), tasks


def test_new_schedule_starts_at_its_first_due_time_after_creation(
    repos: tuple[ScheduleRepository, TaskRepository], clock: ManualClock
) -> None:
    schedules, tasks = repos
    created = schedules.add(name="m", type="t.m", cron="* * * * *", payload={"k": 1})
    assert created.next_due_utc == _utc(2026, 1, 1, 10, 1)
    assert schedules.enqueue_due() == []  # 10:00 passed before it existed
    clock.advance(30)
    [done] = schedules.enqueue_due()
    task = tasks.get(done.task_id)
    assert (task.type, task.payload, task.schedule) == ("t.m", {"k": 1}, "m")
    assert task.idempotency_key == due_key("m", _utc(2026, 1, 1, 10, 1))
    assert schedules.enqueue_due() == []
    assert schedules.get("m").last_task_id == task.task_id
    with pytest.raises(ScheduleExists):
        schedules.add(name="m", type="t.m", cron="* * * * *")
    with pytest.raises(InvalidSchedule):
        schedules.add(name="x", type="t", cron="* * * * *", timezone="Nowhere/Land")


def test_a_runner_dying_between_enqueue_and_advance_neither_doubles_nor_skips(
    db: Database, repos: tuple[ScheduleRepository, TaskRepository], clock: ManualClock
) -> None:
    schedules, tasks = repos
    schedules.add(name="m", type="t.m", cron="* * * * *")
    clock.advance(30)  # 10:01 is due
    # Runner A enqueues the due time's task, then dies before moving next_due on.
    stale = schedules.get("m")
    a = TaskRepository(db, clock)
    first = a.enqueue(
        type="t.m", idempotency_key=due_key("m", stale.next_due_utc), schedule="m"
    ).task
    # Runner B takes over: the same due time maps to the same task; nothing is skipped.
    other = ScheduleRepository(db, clock, TaskRepository(db, clock))
    [done] = other.enqueue_due()
    assert (done.task_id, done.created) == (first.task_id, False)
    clock.advance(60)
    # Both runners now race on 10:02: still one task.
    results = schedules.enqueue_due() + other.enqueue_due()
    assert len({r.task_id for r in results}) == 1
    assert sorted(tasks.list(type="t.m"), key=lambda t: t.task_id)[-1].schedule == "m"
    assert len(tasks.list(type="t.m")) == 2


def test_pause_resume_run_remove(
    repos: tuple[ScheduleRepository, TaskRepository], clock: ManualClock
) -> None:
    schedules, tasks = repos
    schedules.add(name="m", type="t.m", cron="* * * * *", catch_up="all")
    assert schedules.pause("m").paused
    clock.advance(600)
    assert schedules.enqueue_due() == []
    resumed = schedules.resume("m")
    assert resumed.next_due_utc > clock.now  # the paused due times are not caught up
    ran = schedules.run("m")
    assert ran.schedule == "m"
    assert ran.idempotency_key is None
    schedules.remove("m")
    with pytest.raises(ScheduleNotFound):
        schedules.get("m")
    with pytest.raises(ScheduleNotFound):
        schedules.remove("m")
    assert tasks.get(ran.task_id).schedule == "m"


def test_declare_from_code_is_idempotent_and_follows_changes(
    repos: tuple[ScheduleRepository, TaskRepository], clock: ManualClock
) -> None:
    schedules, _ = repos
    first = schedules.declare("report.daily", "report.daily", "0 6 * * *", timezone="Europe/Prague")
    assert first.source == "code"
    assert first.next_due_utc == _utc(2026, 1, 2, 5)
    again = schedules.declare("report.daily", "report.daily", "0 6 * * *", timezone="Europe/Prague")
    assert again.updated_at_utc == first.updated_at_utc  # nothing written
    schedules.pause("report.daily")
    changed = schedules.declare("report.daily", "report.daily", "0 7 * * *", timezone="UTC")
    assert changed.cron == "0 7 * * *"
    assert changed.paused
    assert changed.next_due_utc == _utc(2026, 1, 2, 7)
