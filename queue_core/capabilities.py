"""CONTRACT §5 capability matching in plain Python: the reference the claim SQL must agree with.

A task's ``compatibility`` is claimable by a worker's ``capabilities`` when, for every key of
the compatibility, the worker has the key and

* the two values are equal JSON values, or
* the worker's value is a list holding a value equal to the task's (the task's value not being
  a list), or
* the task's value is a list and the worker's value is a list holding every element of it
  (set inclusion: order and repetition do not matter, and an empty list is always included).

"Equal" is JSON equality, which is not Python's ``==``: ``true`` is not ``1``, ``1`` is ``1.0``
(JSON has one number type), objects are equal when they have the same keys with equal values
whatever their order, and lists when they hold equal elements in the same order.

A task list is never matched as one element of a worker's list of lists: ``[1, 2]`` does not
match ``[[1, 2]]``. The contract's "(or, when the task's value is a list, containing all of it)"
reads as what "containing" means for a list, and both SQL dialects implement that reading.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def json_equal(a: Any, b: Any) -> bool:
    """Equality of two JSON values (see the module docstring)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(json_equal(a[key], b[key]) for key in a)
    if _is_list(a) and _is_list(b):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    return False


def _is_list(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes))


def _holds(offered: Sequence[Any], wanted: Any) -> bool:
    return any(json_equal(item, wanted) for item in offered)


def requirement_met(wanted: Any, offered: Any) -> bool:
    """Whether a worker value ``offered`` satisfies a task requirement value ``wanted``."""
    if _is_list(wanted):
        return _is_list(offered) and all(_holds(offered, item) for item in wanted)
    if json_equal(wanted, offered):
        return True
    return _is_list(offered) and _holds(offered, wanted)


def matches(compatibility: Mapping[str, Any], capabilities: Mapping[str, Any]) -> bool:
    """Whether a task with ``compatibility`` is claimable by a worker with ``capabilities``."""
    return all(
        key in capabilities and requirement_met(wanted, capabilities[key])
        for key, wanted in compatibility.items()
    )


__all__ = ["json_equal", "matches", "requirement_met"]
