"""What a task may be (TaskCreate and the enqueue checks), and JSON payloads round-tripping
unchanged through enqueue/get on both backends."""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from sqlalchemy import func, select

from queue_core.database import Database
from queue_core.repositories import InvalidPayload, PayloadTooLarge, TaskRepository
from queue_core.repositories._common import TASKS
from queue_core.schemas import TaskCreate
from queue_core.settings import (
    JSON_MAX_DEPTH_DEFAULT,
    MAX_ATTEMPTS_MAX,
    MAX_ATTEMPTS_MIN,
    PRIORITY_MAX,
    PRIORITY_MIN,
    TYPE_MAX_LENGTH,
    TYPE_PATTERN,
)

FAST = settings(max_examples=150, deadline=None)
DB_EXAMPLES = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
INT64_EDGES = [INT64_MAX, 2**63, 2**64 - 1, 2**64, INT64_MIN, INT64_MIN - 1]

# Any character a JSON string can carry, except U+0000 (rejected, see below).
JSON_CHARACTERS = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=INT64_MIN, max_value=INT64_MAX)
    | st.floats(min_value=-9.2e18, max_value=9.2e18)
    | st.text(JSON_CHARACTERS, max_size=20)
)
json_keys = st.text(JSON_CHARACTERS, max_size=10)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(json_keys, children, max_size=5)
    ),
    max_leaves=30,
)
json_objects = st.dictionaries(json_keys, json_values, max_size=6)


def _valid_type(value: str) -> bool:
    return 1 <= len(value) <= TYPE_MAX_LENGTH and re.fullmatch(TYPE_PATTERN, value) is not None


# --- TaskCreate: exactly what the contract allows ---


@FAST
@given(st.from_regex(TYPE_PATTERN, fullmatch=True).filter(lambda s: len(s) <= TYPE_MAX_LENGTH))
def test_type_matching_the_pattern_is_accepted(task_type: str) -> None:
    assert TaskCreate(type=task_type).type == task_type


@FAST
@given(st.text(max_size=TYPE_MAX_LENGTH + 20))
def test_type_is_accepted_exactly_when_it_matches(task_type: str) -> None:
    if _valid_type(task_type):
        assert TaskCreate(type=task_type).type == task_type
    else:
        with pytest.raises(ValidationError):
            TaskCreate(type=task_type)


@pytest.mark.parametrize(
    "task_type",
    ["", ".hidden", "-x", "has space", "tab\there", "x" * (TYPE_MAX_LENGTH + 1), "é", "a\n"],
)
def test_bad_types(task_type: str) -> None:
    with pytest.raises(ValidationError):
        TaskCreate(type=task_type)


def test_longest_type() -> None:
    assert TaskCreate(type="x" * TYPE_MAX_LENGTH).type == "x" * TYPE_MAX_LENGTH


@FAST
@given(st.integers(min_value=-(10**6), max_value=10**6))
def test_priority_range(priority: int) -> None:
    if PRIORITY_MIN <= priority <= PRIORITY_MAX:
        assert TaskCreate(type="t", priority=priority).priority == priority
    else:
        with pytest.raises(ValidationError):
            TaskCreate(type="t", priority=priority)


@FAST
@given(st.integers(min_value=-1000, max_value=1000))
def test_max_attempts_range(max_attempts: int) -> None:
    if MAX_ATTEMPTS_MIN <= max_attempts <= MAX_ATTEMPTS_MAX:
        assert TaskCreate(type="t", max_attempts=max_attempts).max_attempts == max_attempts
    else:
        with pytest.raises(ValidationError):
            TaskCreate(type="t", max_attempts=max_attempts)


@pytest.mark.parametrize("payload", [[], [1], "text", 1, 1.5, True, None])
def test_payload_and_compatibility_must_be_objects(payload: Any) -> None:
    with pytest.raises(ValidationError):
        TaskCreate(type="t", payload=payload)
    with pytest.raises(ValidationError):
        TaskCreate(type="t", compatibility=payload)


def test_unknown_fields_and_bad_keys_are_rejected() -> None:
    with pytest.raises(ValidationError, match="extra"):
        TaskCreate(type="t", priorty=5)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        TaskCreate(type="t", idempotency_key="")
    with pytest.raises(ValidationError):
        TaskCreate(type="t", idempotency_key="k" * 256)
    with pytest.raises(ValidationError):
        TaskCreate(type="t", timeout_seconds=0)


# --- the enqueue checks: size, depth, and values JSON cannot hold ---


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"d": value}
    return value


def _small_db(db: Database, **overrides: Any) -> Database:
    return Database(db.url, settings=db.settings.model_copy(update=overrides))


def _count(db: Database) -> int:
    with db.read() as conn:
        return int(conn.execute(select(func.count()).select_from(TASKS)).scalar_one())


def test_payload_size_limit(db: Database) -> None:
    limit = 100
    small = _small_db(db, payload_max_bytes=limit)
    try:
        tasks = TaskRepository(small)
        fits = {"s": "x" * (limit - len(b'{"s":""}'))}
        assert len(orjson.dumps(fits)) == limit
        assert tasks.enqueue(type="t", payload=fits).task.payload == fits
        with pytest.raises(PayloadTooLarge, match=f"payload is {limit + 1} bytes; the limit is"):
            tasks.enqueue(type="t", payload={"s": fits["s"] + "x"})
        with pytest.raises(PayloadTooLarge):
            tasks.enqueue(type="t", compatibility={"s": fits["s"] + "x"})
        assert _count(db) == 1
    finally:
        small.dispose()


def test_default_payload_limit_is_one_mebibyte(db: Database) -> None:
    tasks = TaskRepository(db)
    with pytest.raises(PayloadTooLarge):
        tasks.enqueue(type="t", payload={"s": "x" * (1024 * 1024)})
    big = {"s": "x" * (1024 * 1024 - 16)}
    assert tasks.get(tasks.enqueue(type="t", payload=big).task.task_id).payload == big


def test_depth_limit(db: Database) -> None:
    tasks = TaskRepository(db)
    deepest = _nested(JSON_MAX_DEPTH_DEFAULT)
    assert tasks.get(tasks.enqueue(type="t", payload=deepest).task.task_id).payload == deepest
    with pytest.raises(InvalidPayload, match=f"deeper than {JSON_MAX_DEPTH_DEFAULT} levels"):
        tasks.enqueue(type="t", payload=_nested(JSON_MAX_DEPTH_DEFAULT + 1))
    with pytest.raises(InvalidPayload):
        tasks.enqueue(type="t", payload={"l": [[[[]]]]}, compatibility=_nested(40))
    with pytest.raises(InvalidPayload):  # lists count as levels too
        tasks.enqueue(type="t", payload={"l": _nested_list(JSON_MAX_DEPTH_DEFAULT)})
    assert _count(db) == 1


def _nested_list(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"x": float("nan")}, "NaN"),
        ({"x": [1.0, float("inf")]}, "Infinity"),
        ({"x": {"y": -float("inf")}}, "Infinity"),
        ({"x": 2**64}, "64-bit"),
        ({"x": -(2**63) - 1}, "64-bit"),
        ({"x": "nul\x00inside"}, "NUL"),
        ({"key\x00": 1}, "NUL"),
        ({"x": "\ud800"}, "surrogates"),
        ({"x": object()}, "not JSON"),
        ({"x": {1: "int key"}}, "not JSON"),
    ],
)
def test_values_json_cannot_hold_are_rejected_not_stored(
    db: Database, payload: dict[str, Any], reason: str
) -> None:
    tasks = TaskRepository(db)
    with pytest.raises(InvalidPayload, match=reason):
        tasks.enqueue(type="t", payload=payload)
    with pytest.raises(InvalidPayload, match=reason):
        tasks.enqueue(type="t", compatibility=payload)
    assert _count(db) == 0


def test_text_that_only_looks_like_nul_or_null_is_fine(db: Database) -> None:
    tasks = TaskRepository(db)
    payload = {"escaped": "\\u0000", "null": None, "word": "null", "nan": "NaN"}
    assert tasks.get(tasks.enqueue(type="t", payload=payload).task.task_id).payload == payload


@FAST
@given(st.integers() | st.sampled_from(INT64_EDGES))
def test_integers_beyond_64_bits_are_rejected(value: int) -> None:
    """CONTRACT §8: outside the signed 64-bit range is refused, never stored changed
    (2**63 .. 2**64-1 used to pass: orjson writes unsigned 64-bit integers)."""
    _check_number_range(value)


@FAST
@given(st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from([1e20, -1e308, 9.3e18]))
def test_floats_beyond_the_64_bit_range_are_rejected(value: float) -> None:
    """CONTRACT §8 says JSON numbers: JSON cannot tell 1e20 from 100000000000000000000."""
    _check_number_range(value)


def _check_number_range(value: float) -> None:
    payload = {"n": [value]}
    from queue_core.settings import QueueSettings
    from queue_core.validation import check_document

    if INT64_MIN <= value <= INT64_MAX:
        check_document("payload", payload, QueueSettings())
    else:
        with pytest.raises(InvalidPayload, match="64-bit"):
            check_document("payload", payload, QueueSettings())


# --- round trip: what goes in comes out, on both backends ---


def _same_json(a: Any, b: Any, *, exact: bool = True) -> bool:
    """Equal as JSON documents, where bools are not numbers.

    ``exact``: numbers keep their Python type and sign (what the payload promises). Otherwise
    numbers are compared as the decimals JSON defines them to be: PostgreSQL's jsonb (the
    compatibility column) turns the float 3.176370847049455e16 into the integer
    31763708470494550 and -0.0 into 0.0, the same JSON numbers.
    """
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_json(a[k], b[k], exact=exact) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(
            _same_json(x, y, exact=exact) for x, y in zip(a, b, strict=True)
        )
    if not exact and isinstance(a, int | float) and isinstance(b, int | float):
        return Decimal(repr(a)) == Decimal(repr(b))
    if isinstance(a, float) and isinstance(b, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return type(a) is type(b) and a == b


@DB_EXAMPLES
@given(payload=json_objects, compatibility=json_objects)
def test_arbitrary_json_round_trips_unchanged(
    db: Database, backend: str, payload: dict[str, Any], compatibility: dict[str, Any]
) -> None:
    tasks = TaskRepository(db)
    created = tasks.enqueue(type="t", payload=payload, compatibility=compatibility).task
    loaded = tasks.get(created.task_id)
    assert _same_json(loaded.payload, payload)
    assert _same_json(loaded.compatibility, compatibility, exact=backend == "sqlite")
    assert _same_json(created.payload, payload)
    [listed] = tasks.list(limit=1)
    assert _same_json(listed.payload, payload)


@pytest.mark.parametrize(
    "value",
    [
        INT64_MIN,
        INT64_MAX,
        9.2e18,
        -9.2e18,
        5e-324,
        0.1,
        -1.5e-7,
        2.0**53 + 1,
        "\U0001f600 emoji",
        "\u2028 line separator",
        'quote " backslash \\',
    ],
)
def test_edge_values_round_trip(db: Database, value: Any) -> None:
    tasks = TaskRepository(db)
    payload = {"v": value, "l": [value]}
    loaded = tasks.get(tasks.enqueue(type="t", payload=payload).task.task_id).payload
    assert _same_json(loaded, payload)
    assert type(loaded["v"]) is type(value)


def test_payload_keeps_float_type_sign_and_key_order(db: Database) -> None:
    tasks = TaskRepository(db)
    payload = {"z": -0.0, "a": 3.176370847049455e16, "m": 1.0, "b": [0.0, -0.0]}
    loaded = tasks.get(tasks.enqueue(type="t", payload=payload).task.task_id).payload
    assert orjson.dumps(loaded) == orjson.dumps(payload)


def test_result_keeps_float_type_sign_and_key_order(db: Database) -> None:
    from queue_core.repositories import LeaseRepository

    tasks, leases = TaskRepository(db), LeaseRepository(db)
    result = {"z": -0.0, "a": 3.176370847049455e16, "m": 1.0, "nested": [{"b": 2, "a": 1}]}
    task_id = tasks.enqueue(type="t").task.task_id
    [claimed] = leases.claim("w", ["t"])
    leases.complete(claimed.lease, result)
    assert orjson.dumps(tasks.get(task_id).result) == orjson.dumps(result)
