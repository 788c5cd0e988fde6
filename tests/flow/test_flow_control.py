"""Pause, global limits and dependencies, enforced in the claim (CONTRACT §4, §9), on both
backends and with every strategy. Time is a ManualClock."""

from __future__ import annotations

import pytest

from queue_core.clock import ManualClock
from queue_core.database import Database
from queue_core.errors import DependencyNotFound
from queue_core.repositories import LeaseRepository, TaskRepository, TypeRepository
from queue_core.states import SchedulingStrategy, TaskStatus

STRATEGIES = [s.value for s in SchedulingStrategy]


@pytest.fixture
def repos(
    db: Database, clock: ManualClock
) -> tuple[TaskRepository, LeaseRepository, TypeRepository]:
    return TaskRepository(db, clock), LeaseRepository(db, clock), TypeRepository(db, clock)


def _ids(claimed: list) -> list[int]:  # type: ignore[type-arg]
    return sorted(t.task_id for t in claimed)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_pause_stops_claims_running_tasks_finish_enqueue_works(
    repos: tuple[TaskRepository, LeaseRepository, TypeRepository], strategy: str
) -> None:
    tasks, leases, types = repos
    running = tasks.enqueue(type="p").task.task_id
    [lease] = leases.claim("w", ["p"], strategy=strategy)
    other = tasks.enqueue(type="q").task.task_id
    types.pause("p")
    waiting = tasks.enqueue(type="p").task.task_id  # enqueue still works
    assert _ids(leases.claim("w", ["p", "q"], limit=10, strategy=strategy)) == [other]
    leases.complete(lease.lease, {"ok": True})  # the running task finishes
    assert tasks.get(running).status is TaskStatus.COMPLETED
    assert types.get("p").paused
    types.resume("p")
    assert _ids(leases.claim("w", ["p"], limit=10, strategy=strategy)) == [waiting]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_max_running_is_a_cap_on_leased_tasks(
    repos: tuple[TaskRepository, LeaseRepository, TypeRepository], strategy: str
) -> None:
    tasks, leases, types = repos
    for _ in range(5):
        tasks.enqueue(type="gpu")
        tasks.enqueue(type="cpu")
    types.set_limits("gpu", max_running=2)
    first = leases.claim("w1", ["gpu", "cpu"], limit=10, strategy=strategy)
    assert sorted(t.type for t in first).count("gpu") == 2
    assert sorted(t.type for t in first).count("cpu") == 5
    assert leases.claim("w2", ["gpu"], limit=10, strategy=strategy) == []
    done = next(t for t in first if t.type == "gpu")
    leases.complete(done.lease)
    assert len(leases.claim("w2", ["gpu"], limit=10, strategy=strategy)) == 1
    assert types.get("gpu").leased == 2
    types.clear_limits("gpu")
    assert len(leases.claim("w2", ["gpu"], limit=10, strategy=strategy)) == 2  # the rest


def test_rate_allows_count_claims_in_any_window(
    repos: tuple[TaskRepository, LeaseRepository, TypeRepository], clock: ManualClock
) -> None:
    tasks, leases, types = repos
    for _ in range(20):
        tasks.enqueue(type="api.call")
    types.set_limits("api.call", rate={"count": 3, "per_seconds": 10})
    assert len(leases.claim("w", ["api.call"], limit=10)) == 3
    clock.advance(5)
    assert leases.claim("w", ["api.call"], limit=10) == []
    clock.advance(4.999)
    assert leases.claim("w", ["api.call"], limit=10) == []
    clock.advance(0.002)  # the first three left the window
    assert len(leases.claim("w", ["api.call"], limit=1)) == 1
    assert len(leases.claim("w", ["api.call"], limit=10)) == 2
    # Both limits at once: the stricter one wins.
    types.set_limits("api.call", max_running=6, rate={"count": 100, "per_seconds": 1})
    clock.advance(10)
    assert len(leases.claim("w", ["api.call"], limit=10)) == 0  # 6 leased already
    types.set_limits("api.call", max_running=8)
    assert len(leases.claim("w", ["api.call"], limit=10)) == 2


def test_limits_survive_in_the_database(db_url: str, clock: ManualClock) -> None:
    with Database(db_url) as first:
        TypeRepository(first, clock).pause("x")
        TypeRepository(first, clock).set_limits("y", max_running=3)
    with Database(db_url) as second:
        listed = {t.type: t for t in TypeRepository(second, clock).list()}
        assert listed["x"].paused
        assert listed["y"].max_running == 3
        TaskRepository(second, clock).enqueue(type="x")
        assert LeaseRepository(second, clock).claim("w", ["x"]) == []


# --- dependencies ---


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_dependent_runs_only_after_all_dependencies_completed(
    repos: tuple[TaskRepository, LeaseRepository, TypeRepository], strategy: str
) -> None:
    tasks, leases, _ = repos
    a = tasks.enqueue(type="step", priority=500).task.task_id
    b = tasks.enqueue(type="step", priority=500).task.task_id
    # A dependent with the best priority still waits for its dependencies.
    c = tasks.enqueue(type="step", priority=1, depends_on=[a, b]).task.task_id
    assert tasks.get(c).depends_on == [a, b]
    claimed = leases.claim("w", ["step"], limit=10, strategy=strategy)
    assert _ids(claimed) == [a, b]
    leases.complete(claimed[0].lease)
    assert leases.claim("w", ["step"], limit=10, strategy=strategy) == []
    leases.complete(claimed[1].lease)
    assert _ids(leases.claim("w", ["step"], limit=10, strategy=strategy)) == [c]


def test_failed_or_cancelled_dependency_cancels_dependents_transitively(
    repos: tuple[TaskRepository, LeaseRepository, TypeRepository],
) -> None:
    tasks, leases, _ = repos
    root = tasks.enqueue(type="s").task.task_id
    child = tasks.enqueue(type="s", depends_on=[root]).task.task_id
    grandchild = tasks.enqueue(type="s", depends_on=[child]).task.task_id
    [lease] = leases.claim("w", ["s"])
    leases.fail(lease.lease, "boom", permanent=True)
    got_child, got_grandchild = tasks.get(child), tasks.get(grandchild)
    assert got_child.status is TaskStatus.CANCELLED
    assert got_child.error_message is not None
    assert f"dependency {root} failed" in got_child.error_message
    assert got_grandchild.status is TaskStatus.CANCELLED
    assert got_grandchild.error_message is not None
    assert f"dependency {child} was cancelled" in got_grandchild.error_message
    assert f"dependency {root} failed" in got_grandchild.error_message
    assert any(log.message == "cancelled" for log in tasks.logs(grandchild))

    other = tasks.enqueue(type="s").task.task_id
    waiting = tasks.enqueue(type="s", depends_on=[other]).task.task_id
    tasks.cancel(other)
    assert tasks.get(waiting).status is TaskStatus.CANCELLED
    assert f"dependency {other} was cancelled" in (tasks.get(waiting).error_message or "")
    # A dependency that already ended badly cancels the new task at once.
    late = tasks.enqueue(type="s", depends_on=[root]).task
    assert late.status is TaskStatus.CANCELLED
    assert f"dependency {root} failed" in (late.error_message or "")


def test_retry_of_a_dependent_waits_again_and_missing_dependency_is_refused(
    repos: tuple[TaskRepository, LeaseRepository, TypeRepository],
) -> None:
    tasks, leases, _ = repos
    root = tasks.enqueue(type="s").task.task_id
    child = tasks.enqueue(type="s", depends_on=[root]).task.task_id
    tasks.cancel(root)
    assert tasks.get(child).status is TaskStatus.CANCELLED
    tasks.retry(child)
    assert leases.claim("w", ["s"], limit=10) == []  # root is not completed
    tasks.retry(root)
    [lease] = leases.claim("w", ["s"], limit=10)
    assert lease.task_id == root
    leases.complete(lease.lease)
    assert _ids(leases.claim("w", ["s"], limit=10)) == [child]
    with pytest.raises(DependencyNotFound, match="99999"):
        tasks.enqueue(type="s", depends_on=[root, 99999])


def test_recovered_lease_that_fails_cancels_dependents(
    repos: tuple[TaskRepository, LeaseRepository, TypeRepository], clock: ManualClock
) -> None:
    tasks, leases, _ = repos
    root = tasks.enqueue(type="s", max_attempts=1).task.task_id
    child = tasks.enqueue(type="s", depends_on=[root]).task.task_id
    leases.claim("w", ["s"], lease_seconds=5)
    clock.advance(10)
    report = leases.recover_expired()
    assert report.failed == [root]
    assert tasks.get(child).status is TaskStatus.CANCELLED
