"""Idempotency keys (CONTRACT §8): a replay with the same type and payload returns the existing
task; the same key with another type or payload is a conflict. On both backends."""

from __future__ import annotations

import itertools
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from queue_core import IdempotencyConflict
from queue_core.database import Database
from queue_core.repositories import TaskRepository
from queue_core.repositories._common import TASKS

DB_EXAMPLES = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

JSON_CHARACTERS = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(min_value=-(2.0**63), max_value=2.0**63 - 1024, allow_nan=False)
    | st.text(JSON_CHARACTERS, max_size=8)
)
payloads = st.dictionaries(
    st.text(JSON_CHARACTERS, max_size=6),
    st.recursive(
        scalars,
        lambda c: (
            st.lists(c, max_size=3)
            | st.dictionaries(st.text(JSON_CHARACTERS, max_size=3), c, max_size=3)
        ),
        max_leaves=10,
    ),
    max_size=4,
)
types = st.sampled_from(["a", "b.c", "media/render"])
keys = st.text(JSON_CHARACTERS, min_size=1, max_size=40)

_unique = itertools.count()


def _canonical(value: Any) -> Any:
    """A hashable form in which two values are equal exactly when they are the same JSON."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return (type(value).__name__, value)
    if isinstance(value, int | float):
        return ("number", Decimal(repr(value)).normalize())
    if isinstance(value, list):
        return ("array", tuple(_canonical(v) for v in value))
    return ("object", frozenset((k, _canonical(v)) for k, v in value.items()))


def _count_key(db: Database, key: str) -> int:
    with db.read() as conn:
        return int(
            conn.execute(
                select(func.count()).select_from(TASKS).where(TASKS.c.idempotency_key == key)
            ).scalar_one()
        )


@DB_EXAMPLES
@given(key=keys, task_type=types, payload=payloads, other=payloads, other_type=types)
def test_replay_returns_the_task_and_a_difference_conflicts(
    db: Database,
    key: str,
    task_type: str,
    payload: dict[str, Any],
    other: dict[str, Any],
    other_type: str,
) -> None:
    key = f"{next(_unique)}:{key}"[:255]  # a fresh key per example; the database persists
    tasks = TaskRepository(db)
    first = tasks.enqueue(type=task_type, payload=payload, priority=5, idempotency_key=key)
    assert first.created is True

    replay = tasks.enqueue(type=task_type, payload=payload, priority=900, idempotency_key=key)
    assert replay.created is False
    assert replay.task == first.task  # the stored task, not the replay's priority

    if other_type != task_type:
        with pytest.raises(IdempotencyConflict, match=f"already used by task {first.task.task_id}"):
            tasks.enqueue(type=other_type, payload=payload, idempotency_key=key)
    assume(_canonical(other) != _canonical(payload))
    with pytest.raises(IdempotencyConflict):
        tasks.enqueue(type=task_type, payload=other, idempotency_key=key)
    assert _count_key(db, key) == 1


@pytest.mark.parametrize(
    ("stored", "replayed"),
    [
        ({"flag": True}, {"flag": 1}),
        ({"flag": False}, {"flag": 0}),
        ({"n": 1}, {"n": True}),
        ({"l": [0, 1]}, {"l": [False, True]}),
        ({"d": {"x": 1.0}}, {"d": {"x": True}}),
        ({"a": None}, {}),
        ({"a": "1"}, {"a": 1}),
        ({"a": [1, 2]}, {"a": [2, 1]}),
    ],
)
def test_payloads_python_calls_equal_but_json_does_not_conflict(
    db: Database, stored: dict[str, Any], replayed: dict[str, Any]
) -> None:
    tasks = TaskRepository(db)
    tasks.enqueue(type="t", payload=stored, idempotency_key="k")
    with pytest.raises(IdempotencyConflict):
        tasks.enqueue(type="t", payload=replayed, idempotency_key="k")


@pytest.mark.parametrize(
    ("stored", "replayed"),
    [
        ({"n": 1}, {"n": 1.0}),  # one JSON number
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}),  # key order is not meaning
        ({"t": [1, 2]}, {"t": (1, 2)}),  # a tuple is sent as a JSON array
        ({"z": 0.0}, {"z": -0.0}),
    ],
)
def test_replays_equal_as_json_are_replays(
    db: Database, stored: dict[str, Any], replayed: dict[str, Any]
) -> None:
    tasks = TaskRepository(db)
    first = tasks.enqueue(type="t", payload=stored, idempotency_key="k").task
    again = tasks.enqueue(type="t", payload=replayed, idempotency_key="k")
    assert (again.created, again.task.task_id) == (False, first.task_id)


def test_keys_are_independent_and_tasks_without_keys_never_collide(db: Database) -> None:
    tasks = TaskRepository(db)
    a = tasks.enqueue(type="t", idempotency_key="a").task
    b = tasks.enqueue(type="t", idempotency_key="b").task
    assert a.task_id != b.task_id
    plain = [tasks.enqueue(type="t").task.task_id for _ in range(3)]
    assert len(set(plain)) == 3
    assert tasks.enqueue(type="t", idempotency_key="a").task.task_id == a.task_id
    # A finished task still holds its key: a replay returns it rather than running again.
    tasks.cancel(a.task_id)
    again = tasks.enqueue(type="t", idempotency_key="a")
    assert (again.created, again.task.status.value) == (False, "cancelled")


def test_replays_and_conflicts_spend_no_id_on_sqlite(sqlite_url: str) -> None:
    # An INSERT that meets the key would spend an AUTOINCREMENT id; the docs' examples show the
    # ids, so replays and conflicts must leave them consecutive.
    db = Database(sqlite_url)
    try:
        tasks = TaskRepository(db)
        first = tasks.enqueue(type="t", payload={"n": 1}, idempotency_key="k").task
        for _ in range(3):
            assert not tasks.enqueue(type="t", payload={"n": 1}, idempotency_key="k").created
        with pytest.raises(IdempotencyConflict):
            tasks.enqueue(type="t", payload={"n": 9}, idempotency_key="k")
        assert tasks.enqueue(type="t", payload={"n": 2}).task.task_id == first.task_id + 1
    finally:
        db.dispose()
