"""CONTRACT §5 capability matching: the claim SQL of each dialect agrees with the Python oracle.

The oracle is ``queue_core.capabilities.matches``. The matrix runs through the public
repositories; the hypothesis test runs the claim statement itself inside a transaction it rolls
back, so thousands of random documents cost no cleanup.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, delete

from queue_core.capabilities import json_equal, matches
from queue_core.claims import ClaimRequest
from queue_core.clock import ManualClock
from queue_core.database import Database
from queue_core.repositories import LeaseRepository, TaskRepository
from queue_core.repositories._common import TASKS
from queue_core.states import SchedulingStrategy

# (task compatibility, worker capabilities, claimable?)
MATRIX: list[tuple[dict[str, Any], dict[str, Any], bool]] = [
    # the contract's three examples
    ({"region": "us"}, {"region": "us", "formats": ["video"]}, True),
    ({"formats": "video"}, {"region": "us", "formats": ["video"]}, True),
    ({"region": "eu"}, {"region": "us", "formats": ["video"]}, False),
    # empty compatibility matches every worker, even one without capabilities
    ({}, {}, True),
    ({}, {"gpu": True}, True),
    # missing key
    ({"gpu": True}, {}, False),
    ({"gpu": True, "region": "us"}, {"region": "us"}, False),
    # equal scalars, each JSON type
    ({"n": 3}, {"n": 3}, True),
    ({"n": 3}, {"n": 4}, False),
    ({"s": "x"}, {"s": "x"}, True),
    ({"s": "x"}, {"s": "X"}, False),
    ({"s": "1"}, {"s": 1}, False),
    ({"b": True}, {"b": True}, True),
    ({"b": False}, {"b": False}, True),
    ({"b": True}, {"b": False}, False),
    # booleans are not integers
    ({"b": True}, {"b": 1}, False),
    ({"b": 1}, {"b": True}, False),
    ({"b": False}, {"b": 0}, False),
    ({"b": 0}, {"b": False}, False),
    ({"b": True}, {"b": [1]}, False),
    ({"b": 1}, {"b": [True]}, False),
    # one number type: 1 is 1.0
    ({"n": 1}, {"n": 1.0}, True),
    ({"n": 1.0}, {"n": 1}, True),
    ({"n": 1.5}, {"n": 1.5}, True),
    ({"n": 1.5}, {"n": 1}, False),
    ({"n": 2}, {"n": [1.0, 2.0]}, True),
    ({"n": [1, 2.0]}, {"n": [2, 1.0, 3]}, True),
    # null is a value like any other, and not the absence of a key
    ({"k": None}, {"k": None}, True),
    ({"k": None}, {}, False),
    ({"k": None}, {"k": 0}, False),
    ({"k": None}, {"k": False}, False),
    ({"k": None}, {"k": ""}, False),
    ({"k": None}, {"k": [None]}, True),
    ({"k": None}, {"k": []}, False),
    ({"k": 0}, {"k": None}, False),
    # list membership
    ({"f": "video"}, {"f": ["audio", "video"]}, True),
    ({"f": "image"}, {"f": ["audio", "video"]}, False),
    ({"f": "video"}, {"f": []}, False),
    ({"f": "video"}, {"f": "audio"}, False),
    # list inclusion
    ({"f": ["video"]}, {"f": ["audio", "video"]}, True),
    ({"f": ["video", "audio"]}, {"f": ["audio", "video"]}, True),
    ({"f": ["video", "video"]}, {"f": ["video"]}, True),
    ({"f": ["video", "image"]}, {"f": ["audio", "video"]}, False),
    ({"f": []}, {"f": ["audio"]}, True),
    ({"f": []}, {"f": []}, True),
    ({"f": []}, {"f": "audio"}, False),
    ({"f": ["video"]}, {"f": "video"}, False),
    ({"f": ["video"]}, {"f": []}, False),
    # a task list is not one element of a worker's list of lists
    ({"f": [1, 2]}, {"f": [[1, 2]]}, False),
    ({"f": [[1, 2]]}, {"f": [[1, 2], [3]]}, True),
    ({"f": [[1]]}, {"f": [[1, 2]]}, False),
    ({"f": [[1, 2]]}, {"f": [[2, 1]]}, False),
    ({"f": [[1]]}, {"f": [[2]]}, False),
    ({"f": [[]]}, {"f": [[1]]}, False),
    ({"f": [[]]}, {"f": [[]]}, True),
    ({"f": [1]}, {"f": [[1]]}, False),
    # nested objects: equal objects match, key order aside; containment is not equality
    ({"o": {"a": 1, "b": 2}}, {"o": {"b": 2, "a": 1}}, True),
    ({"o": {"a": 1}}, {"o": {"a": 1, "b": 2}}, False),
    ({"o": {"a": 1, "b": 2}}, {"o": {"a": 1}}, False),
    ({"o": {"a": 1}}, {"o": {"a": 1.0}}, True),
    ({"o": {"a": True}}, {"o": {"a": 1}}, False),
    ({"o": {"a": None}}, {"o": {}}, False),
    ({"o": {"a": [1, 2]}}, {"o": {"a": [2, 1]}}, False),
    ({"o": {"a": [1]}}, {"o": {"a": [1, 1]}}, False),
    ({"o": {"a": {"b": [1, {"c": "d"}]}}}, {"o": {"a": {"b": [1, {"c": "d"}]}}}, True),
    ({"o": {"a": {"b": [1, {"c": "d"}]}}}, {"o": {"a": {"b": [1, {"c": "e"}]}}}, False),
    ({"o": {}}, {"o": {}}, True),
    ({"o": {}}, {"o": {"a": 1}}, False),
    ({"o": {"a": 1}}, {"o": [{"a": 1}, {"b": 2}]}, True),
    ({"o": {"a": 1}}, {"o": [{"a": 1, "b": 2}]}, False),
    ({"o": [{"a": 1}]}, {"o": [{"b": 2}, {"a": 1.0}]}, True),
    ({"o": {"a": 1}}, {"o": "x"}, False),
    ({"o": "x"}, {"o": {"x": 1}}, False),
    # keys that need quoting in a JSON path
    ({"a.b": {"c d": [1]}}, {"a.b": {"c d": [1]}}, True),
    ({"a.b": {"c d": [1]}}, {"a.b": {"c d": [2]}}, False),
    # several requirements: all must hold
    ({"region": "us", "gpu": True}, {"region": ["us", "eu"], "gpu": True}, True),
    ({"region": "us", "gpu": True}, {"region": ["us", "eu"], "gpu": False}, False),
]


def test_matrix_oracle() -> None:
    for compatibility, capabilities, expected in MATRIX:
        assert matches(compatibility, capabilities) is expected, (compatibility, capabilities)


def test_json_equal_is_json_not_python_equality() -> None:
    assert json_equal(1, 1.0)
    assert not json_equal(True, 1)
    assert not json_equal(0, False)
    assert not json_equal(None, 0)
    assert json_equal({"a": [1, {"b": None}]}, {"a": [1.0, {"b": None}]})
    assert not json_equal([1, 2], (1, 2, 3))
    assert not json_equal("a", ["a"])


def _groups() -> Iterator[tuple[str, dict[str, Any], list[tuple[dict[str, Any], bool]]]]:
    """The matrix grouped by worker capabilities: one task type per worker."""
    by_caps: dict[str, tuple[dict[str, Any], list[tuple[dict[str, Any], bool]]]] = {}
    for compatibility, capabilities, expected in MATRIX:
        key = repr(sorted(capabilities.items(), key=repr))
        by_caps.setdefault(key, (capabilities, []))[1].append((compatibility, expected))
    for n, (capabilities, cases) in enumerate(by_caps.values()):
        yield f"caps.{n}", capabilities, cases


@pytest.mark.parametrize("strategy", [s.value for s in SchedulingStrategy])
def test_matrix_claims(db: Database, clock: ManualClock, strategy: str) -> None:
    tasks = TaskRepository(db, clock)
    leases = LeaseRepository(db, clock)
    for task_type, capabilities, cases in _groups():
        ids = [
            (tasks.enqueue(type=task_type, compatibility=compat).task.task_id, compat, expected)
            for compat, expected in cases
        ]
        claimed = leases.claim(
            "w", [task_type], capabilities=capabilities, limit=len(ids) + 1, strategy=strategy
        )
        got = {task.task_id for task in claimed}
        for task_id, compat, expected in ids:
            assert (task_id in got) is expected, (compat, capabilities, strategy)


def test_worker_without_capabilities_claims_only_unconstrained(
    db: Database, clock: ManualClock
) -> None:
    tasks = TaskRepository(db, clock)
    leases = LeaseRepository(db, clock)
    free = tasks.enqueue(type="t").task.task_id
    tasks.enqueue(type="t", compatibility={"gpu": True})
    assert [t.task_id for t in leases.claim("w", ["t"], limit=5)] == [free]


# --- random documents: SQL agrees with the oracle ---

KEYS = ["a", "b", "c"]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-2, 2),
    st.sampled_from([0.0, 1.0, -1.0, 0.5, 2.0]),
    st.sampled_from(["", "x", "y", "1", "true"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(["p", "q", "r.s"]), inner, max_size=2),
    ),
    max_leaves=6,
)
documents = st.dictionaries(st.sampled_from(KEYS), values, max_size=3)


@st.composite
def worker_and_tasks(draw: st.DrawFn) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    capabilities = draw(documents)
    # Tasks built from the worker's own values (and lists of them) match often enough to
    # exercise the interesting branches, not only the trivial mismatches.
    derived = st.builds(
        lambda pick, wrap: {k: ([v] if wrap else v) for k, v in pick.items()},
        st.just(capabilities) | st.dictionaries(st.sampled_from(KEYS), values, max_size=2),
        st.booleans(),
    )
    members = [
        {k: v[0]}
        for k, v in capabilities.items()
        if isinstance(v, list) and v and draw(st.booleans())
    ]
    tasks = draw(st.lists(documents | derived, max_size=6)) + members
    return capabilities, tasks


def _claim_rolled_back(
    conn: Connection,
    db: Database,
    now: Any,
    capabilities: dict[str, Any],
    compatibilities: list[dict[str, Any]],
) -> set[int]:
    rows = conn.execute(
        TASKS.insert().returning(TASKS.c.id),
        [
            {
                "type": "t",
                "compatibility": compat,
                "payload": {},
                "run_after_utc": now,
                "wr_key": float(n),
            }
            for n, compat in enumerate(compatibilities)
        ],
    ).all()
    index = {row.id: n for n, row in enumerate(rows)}
    claimer = db.dialect.claimer(SchedulingStrategy.PRIORITY, None)
    # The claimer runs on the DBAPI connection under this transaction (dialects/connections.py).
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        claimed = claimer.claim(
            cursor, ClaimRequest("w", ["t"], capabilities, limit=len(rows) + 1), now
        )
    finally:
        cursor.close()
    return {index[task.task_id] for task in claimed}


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=worker_and_tasks())
def test_sql_agrees_with_oracle(db: Database, clock: ManualClock, case: Any) -> None:
    capabilities, compatibilities = case
    if not compatibilities:
        return
    with db.engine.connect() as conn:
        tx = conn.begin()
        try:
            got = _claim_rolled_back(conn, db, clock(), capabilities, compatibilities)
        finally:
            tx.rollback()
    expected = {n for n, compat in enumerate(compatibilities) if matches(compat, capabilities)}
    wrong = [(compatibilities[n], n in got) for n in sorted(got ^ expected)]
    assert not wrong, f"capabilities {capabilities}: SQL disagrees with the oracle on {wrong}"


def test_oracle_agrees_on_every_pair_of_small_values(db: Database, clock: ManualClock) -> None:
    """Exhaustive over a small universe of values, as requirement and as offer."""
    universe: list[Any] = [
        None, True, False, 0, 1, 1.0, 2, "x", "1", [], [1], [1.0, 2], [True], [None],
        ["x", 1], [[1]], [[1], 2], {}, {"p": 1}, {"p": 1.0}, {"p": True}, [{"p": 1}],
    ]  # fmt: skip
    pairs = list(itertools.product(universe, universe))
    with db.engine.connect() as conn:
        # One claim per offered value, over a task per wanted value.
        for offered in universe:
            tx = conn.begin()
            try:
                got = _claim_rolled_back(
                    conn, db, clock(), {"k": offered}, [{"k": wanted} for wanted in universe]
                )
            finally:
                tx.rollback()
            expected = {
                n for n, wanted in enumerate(universe) if matches({"k": wanted}, {"k": offered})
            }
            wrong = [universe[n] for n in sorted(got ^ expected)]
            assert not wrong, f"offered {offered!r}: SQL disagrees on wanted values {wrong}"
    assert len(pairs) == len(universe) ** 2
    with db.write() as conn:
        conn.execute(delete(TASKS))
