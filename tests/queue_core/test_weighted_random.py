"""weighted_random is exact: each due task is chosen with probability proportional to 1/priority.

The chi-square test keeps the queue's composition constant (a claimed task is replaced by one
of the same priority, or comes back itself as a retry) and compares the observed share of each
priority with ``(count_p / p) / sum``. Batch claims are weighted sampling without replacement,
so each pick of a batch is compared with the composition left after the picks before it.
Replacements alternate between due-now tasks (keyed at enqueue) and delayed ones (keyed by
promotion when they come due), and some claimed tasks fail and return after their back-off:
all three ways into the race are covered by the same test.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from datetime import timedelta

from sqlalchemy import select

from queue_core.clock import ManualClock
from queue_core.database import Database
from queue_core.models import QueueClockRow
from queue_core.repositories import LeaseRepository, TaskRepository
from queue_core.repositories._common import TASKS
from queue_core.schemas import TaskCreate

WR = "weighted_random"
SEED = 20_261_128
COMPOSITION = {1: 24, 10: 40, 100: 80}  # priority -> tasks queued at every claim
BATCH = 50
CLAIMS = 20_000
CHI2_CRITICAL_DF2 = 13.816  # p = 0.001 with two degrees of freedom


def _pick_probabilities(counts: dict[int, int]) -> dict[int, float]:
    weights = {p: n / p for p, n in counts.items()}
    total = sum(weights.values())
    return {p: w / total for p, w in weights.items()}


def _chi_square(observed: Counter[int], expected: dict[int, float]) -> float:
    return sum((observed[p] - e) ** 2 / e for p, e in expected.items())


def test_shares_fit_one_over_priority(db: Database, clock: ManualClock) -> None:
    tasks = TaskRepository(db, clock, rng=random.Random(SEED))
    leases = LeaseRepository(db, clock, rng=random.Random(SEED + 1))
    tasks.enqueue_many(
        [
            TaskCreate(type="t", priority=p, max_attempts=100)
            for p, n in COMPOSITION.items()
            for _ in range(n)
        ]
    )
    observed: Counter[int] = Counter()
    first_picks: Counter[int] = Counter()
    expected = dict.fromkeys(COMPOSITION, 0.0)
    vtimes = []
    for round_no in range(CLAIMS // BATCH):
        batch = leases.claim("w", ["t"], limit=BATCH, strategy=WR)
        assert len(batch) == BATCH
        left = dict(COMPOSITION)
        for task in batch:  # in race order: smallest key first
            for p, share in _pick_probabilities(left).items():
                expected[p] += share
            observed[task.priority] += 1
            left[task.priority] -= 1
        first_picks[batch[0].priority] += 1
        # Put the composition back: one task fails and returns after its back-off (about
        # 1 s); the others are replaced, alternately due now and due in half a second.
        retried = batch[0] if round_no % 10 == 0 else None
        if retried is not None:
            leases.fail(retried.lease, "try again")
        tasks.enqueue_many(
            [
                TaskCreate(
                    type="t",
                    priority=task.priority,
                    max_attempts=100,
                    run_after_utc=clock() + timedelta(seconds=0.5 * (n % 2)),
                )
                for n, task in enumerate(batch)
                if task is not retried
            ]
        )
        clock.advance(2)  # every delayed replacement and retry is due at the next claim
        if round_no % 20 == 0:
            with db.read() as conn:
                vtimes.append(conn.execute(select(QueueClockRow.vtime)).scalar_one())

    assert sum(observed.values()) == CLAIMS
    chi2 = _chi_square(observed, expected)
    shares = {p: round(observed[p] / CLAIMS, 4) for p in COMPOSITION}
    assert chi2 < CHI2_CRITICAL_DF2, f"shares {shares}, expected {expected}, chi2 {chi2:.2f}"
    # The first pick of each batch is a plain race over the whole composition.
    rounds = CLAIMS // BATCH
    first_expected = {p: share * rounds for p, share in _pick_probabilities(COMPOSITION).items()}
    assert _chi_square(first_picks, first_expected) < CHI2_CRITICAL_DF2
    # The virtual clock only moves forward.
    assert vtimes == sorted(vtimes)
    assert vtimes[-1] > 0


def test_chi_square_rejects_a_biased_sample() -> None:
    """The statistic above can fail: shares of the old RANDOM()-keyed design do not fit."""
    rounds = 2000
    expected = {p: s * rounds for p, s in _pick_probabilities(COMPOSITION).items()}
    # Priority 1 won about half as often as it should against the rest.
    biased = Counter({1: int(expected[1] * 0.9), 10: int(expected[10] * 1.4)})
    biased[100] = rounds - biased[1] - biased[10]
    assert _chi_square(biased, expected) > CHI2_CRITICAL_DF2


def test_lowest_priority_is_not_starved(db: Database, clock: ManualClock) -> None:
    """A priority-1000 task among ten always-replenished priority-100 tasks: its share of a
    single pick is (1/1000) / (10/100 + 1/1000), about one claim in 100. priority never picks
    it; weighted_random does, again and again."""
    tasks = TaskRepository(db, clock, rng=random.Random(SEED))
    leases = LeaseRepository(db, clock, rng=random.Random(SEED + 2))
    tasks.enqueue_many([TaskCreate(type="t", priority=100) for _ in range(10)])
    low = tasks.enqueue(type="t", priority=1000).task.task_id

    for _ in range(50):
        [claimed] = leases.claim("w", ["t"], strategy="priority")
        assert claimed.task_id != low
        leases.complete(claimed.lease)
        tasks.enqueue(type="t", priority=100)

    waits = []
    since = 0
    claims = 0
    while len(waits) < 5 and claims < 20_000:
        batch = leases.claim("w", ["t"], limit=5, strategy=WR)
        claims += len(batch)
        for task in batch:
            since += 1
            if task.priority == 1000:
                waits.append(since)
                since = 0
        leases.complete_many([(t.lease, None) for t in batch])
        tasks.enqueue_many([TaskCreate(type="t", priority=t.priority) for t in batch])
    assert len(waits) == 5, f"the priority-1000 task won {len(waits)} times in {claims} claims"
    assert tasks.get(low).status.value == "completed"
    # The mean wait is about 100 claims (geometric): nothing near "never".
    assert all(w < 2_000 for w in waits)


def test_delayed_and_retried_tasks_join_the_race_when_due(db: Database, clock: ManualClock) -> None:
    tasks = TaskRepository(db, clock, rng=random.Random(SEED))
    leases = LeaseRepository(db, clock, rng=random.Random(SEED + 3))
    tasks.enqueue_many([TaskCreate(type="t", priority=50) for _ in range(3)])
    delayed = tasks.enqueue(
        type="t", priority=1, run_after_utc=clock() + timedelta(seconds=30)
    ).task.task_id

    def key_of(task_id: int) -> float | None:
        with db.read() as conn:
            value = conn.execute(select(TASKS.c.wr_key).where(TASKS.c.id == task_id)).scalar()
        return None if value is None else float(value)

    assert key_of(delayed) is None  # not due: no place in the race yet
    [first] = leases.claim("w", ["t"], strategy=WR)
    assert first.task_id != delayed
    assert key_of(delayed) is None  # still not due after a claim
    clock.advance(30)
    with db.read() as conn:
        vtime = conn.execute(select(QueueClockRow.vtime)).scalar_one()
    batch = leases.claim("w", ["t"], limit=10, strategy=WR)
    assert delayed in {t.task_id for t in batch}  # promoted, then claimed in the same call
    promoted_key = next(t.wr_key for t in batch if t.task_id == delayed)
    assert promoted_key is not None
    assert promoted_key >= vtime

    # A failed task leaves the race during its back-off and rejoins when it is due.
    retry = next(t for t in batch if t.task_id == delayed)
    outcome = leases.fail(retry.lease, "boom")
    assert outcome.run_after_utc is not None
    assert key_of(delayed) is None
    assert leases.claim("w", ["t"], strategy=WR) == []  # the others are leased
    clock.advance((outcome.run_after_utc - clock()).total_seconds())
    [again] = leases.claim("w", ["t"], strategy=WR)
    assert (again.task_id, again.attempt) == (delayed, 2)

    # Released and operator-retried tasks rejoin at once, with a fresh key.
    leases.release(again.lease)
    [released] = leases.claim("w", ["t"], strategy=WR)
    assert released.task_id == delayed
    leases.fail(released.lease, "fatal", permanent=True)
    tasks.retry(delayed)
    [requeued] = leases.claim("w", ["t"], strategy=WR)
    assert requeued.task_id == delayed


def test_keys_respect_type_filters(db: Database, clock: ManualClock) -> None:
    """Within a worker's types the choice stays proportional to 1/priority (first picks of
    repeated fresh races over a two-task subset)."""
    tasks = TaskRepository(db, clock, rng=random.Random(SEED))
    leases = LeaseRepository(db, clock, rng=random.Random(SEED + 4))
    wins: Counter[int] = Counter()
    rounds = 300
    tasks.enqueue_many([TaskCreate(type="other", priority=1) for _ in range(5)])
    for _ in range(rounds):
        made = tasks.enqueue_many(
            [TaskCreate(type="mine", priority=1), TaskCreate(type="mine", priority=3)]
        )
        batch = leases.claim("w", ["mine"], limit=2, strategy=WR)
        assert {t.task_id for t in batch} == {t.task_id for t in made}
        wins[batch[0].priority] += 1
    expected = {1: rounds * 0.75, 3: rounds * 0.25}
    chi2 = sum((wins[p] - e) ** 2 / e for p, e in expected.items())
    assert chi2 < 10.83, (wins, expected)  # p = 0.001, one degree of freedom
    assert math.isclose(sum(wins.values()), rounds)
