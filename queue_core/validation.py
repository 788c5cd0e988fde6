"""What a document must be to be stored unchanged: checks shared by the repositories, the REST
API and the CLI. Public: ``api`` and ``workers`` import these, never ``repositories._common``."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from queue_core.errors import QueueError
from queue_core.settings import QueueSettings

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

EMPTY_DOCUMENT = "{}"

# A number outside the signed 64-bit range is written with at least 19 digits, or with an
# exponent of 18 or more (orjson writes 1e20 so); only a document holding either is walked.
_BIG_NUMBER_TEXT = re.compile(rb"\d{19}|[eE]\+?(?:1[89]|[2-9]\d|\d{3})")


class PayloadTooLarge(QueueError):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"payload is {size} bytes; the limit is {limit}")
        self.size = size
        self.limit = limit


class InvalidPayload(QueueError):
    """The payload cannot be stored: not JSON, nested too deep, or holding a value that would
    change on the way or that the contract refuses (NaN, a NUL character, a number outside the
    signed 64-bit range)."""


def json_depth(value: Any, limit: int) -> int:
    """Nesting depth of a JSON value, stopping early past ``limit``."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Iterable[Any] = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest


def may_hold_big_numbers(text: bytes) -> bool:
    """True when the JSON ``text`` may hold a number outside the signed 64-bit range."""
    return _BIG_NUMBER_TEXT.search(text) is not None


def check_document(name: str, value: Mapping[str, Any], settings: QueueSettings) -> int:
    """Validate a payload or compatibility document; returns its serialised size."""
    return len(encode_document(name, value, settings))


def encode_document(name: str, value: Mapping[str, Any], settings: QueueSettings) -> str:
    """Validate a payload or compatibility document; returns it as the JSON text to store."""
    if not value and isinstance(value, dict) and settings.payload_max_bytes >= len(EMPTY_DOCUMENT):
        return EMPTY_DOCUMENT  # the common empty compatibility: nothing to check
    try:
        encoded = orjson.dumps(value)
    except TypeError as exc:
        problem = _unstorable(value)
        if problem:
            raise InvalidPayload(f"{name} {problem}") from exc
        raise InvalidPayload(f"{name} is not JSON-serialisable: {exc}") from exc
    if len(encoded) > settings.payload_max_bytes:
        raise PayloadTooLarge(len(encoded), settings.payload_max_bytes)
    # Every level of nesting opens a bracket in the text: only a document with more brackets
    # than the limit can be too deep, and only then is it walked.
    limit = settings.json_max_depth
    if encoded.count(b"{") + encoded.count(b"[") > limit and json_depth(value, limit) > limit:
        raise InvalidPayload(f"{name} is nested deeper than {limit} levels")
    # orjson writes NaN and Infinity as null (the value would silently change), jsonb cannot
    # hold U+0000, and a number past the signed 64-bit range is refused (CONTRACT §8): as an
    # integer it is no BIGINT and no exact double, and JSON cannot tell 1e20 from 10**20.
    # Each leaves a trace in the bytes, so only then is the value walked.
    if b"null" in encoded or b"\\u0000" in encoded or may_hold_big_numbers(encoded):
        problem = _unstorable(value)
        if problem:
            raise InvalidPayload(f"{name} {problem}")
    return encoded.decode()


def _unstorable(value: Any) -> str | None:
    """Why a JSON-serialisable value cannot be stored unchanged, or None."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return f"holds {item!r}: JSON has no NaN or Infinity"
        if isinstance(item, int | float) and not isinstance(item, bool):
            if not INT64_MIN <= item <= INT64_MAX:  # exact, also for floats
                return f"holds the number {item!r}, outside the signed 64-bit range"
        elif isinstance(item, str) and "\x00" in item:
            return "holds a NUL character (U+0000), which PostgreSQL cannot store"
        elif isinstance(item, Mapping):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return None


def json_equal(a: Any, b: Any) -> bool:
    """Equal as JSON values. Python's ``==`` is not: it calls ``True == 1`` and
    ``{"on": False} == {"on": 0}``. Numbers compare by value (``1`` is ``1.0``)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict):
        return (
            isinstance(b, dict)
            and a.keys() == b.keys()
            and all(json_equal(value, b[key]) for key, value in a.items())
        )
    if isinstance(a, list):
        return (
            isinstance(b, list)
            and len(a) == len(b)
            and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
        )
    if isinstance(a, int | float):
        return isinstance(b, int | float) and a == b
    return type(a) is type(b) and a == b
