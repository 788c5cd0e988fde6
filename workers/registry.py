"""Handlers by task type: the ``@task`` decorator and the registry it fills."""

from __future__ import annotations

import functools
import inspect
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from queue_core.errors import InvalidSchedule
from queue_core.scheduling import CatchUp, Cron
from queue_core.settings import (
    SCHEDULE_CATCH_UP_DEFAULT,
    SCHEDULE_TIMEZONE_DEFAULT,
    TYPE_MAX_LENGTH,
    TYPE_PATTERN,
)
from workers.errors import DuplicateHandler, HandlerError

F = TypeVar("F", bound=Callable[..., Any])

_TYPE_RE = re.compile(TYPE_PATTERN)


@dataclass(frozen=True)
class Periodic:
    """The schedule a ``@task(..., cron=...)`` declares (CONTRACT §9): named after the type,
    created or updated in the database when a worker serving the type starts."""

    cron: str
    timezone: str = SCHEDULE_TIMEZONE_DEFAULT
    catch_up: str = SCHEDULE_CATCH_UP_DEFAULT
    payload: dict[str, Any] = field(default_factory=dict)
    priority: int | None = None

    def __post_init__(self) -> None:
        try:
            Cron(self.cron, self.timezone)
            CatchUp(self.catch_up)
        except (InvalidSchedule, ValueError) as exc:
            raise HandlerError(str(exc)) from exc


@dataclass(frozen=True)
class Handler:
    """A registered handler and how to call it."""

    name: str
    func: Callable[..., Any]
    is_async: bool
    takes_context: bool
    periodic: Periodic | None = None

    @property
    def definition(self) -> tuple[str, int]:
        """Where the function is defined: the same definition run twice is one handler."""
        code = getattr(inspect.unwrap(self.func), "__code__", None)
        if code is None:
            return (self.origin, id(self.func))
        return (f"{self.origin}@{code.co_filename}", code.co_firstlineno)

    @property
    def origin(self) -> str:
        module = getattr(self.func, "__module__", None) or "?"
        qualname = getattr(self.func, "__qualname__", None) or repr(self.func)
        return f"{module}.{qualname}"


def _is_async(func: Callable[..., Any]) -> bool:
    target: Any = func
    while isinstance(target, functools.partial):
        target = target.func
    if inspect.iscoroutinefunction(target):
        return True
    call = getattr(target, "__call__", None)  # noqa: B004 - async callable objects
    return call is not None and inspect.iscoroutinefunction(call)


def _takes_context(name: str, func: Callable[..., Any]) -> bool:
    """True when the handler accepts a second positional argument (the context)."""
    try:
        parameters = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):  # some builtins have no signature: give them the payload
        return False
    if any(p.kind is p.VAR_POSITIONAL for p in parameters):
        return True
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if not positional:
        raise HandlerError(f"the handler for {name!r} must accept the payload as its argument")
    required = [p for p in positional[2:] if p.default is p.empty]
    if required:
        raise HandlerError(
            f"the handler for {name!r} takes (payload, ctx); "
            f"it also requires {', '.join(p.name for p in required)}"
        )
    return len(positional) >= 2


def check_task_type(name: str) -> None:
    if not isinstance(name, str) or not name:
        raise HandlerError("a task type must be a non-empty string")
    if len(name) > TYPE_MAX_LENGTH or not _TYPE_RE.match(name):
        raise HandlerError(
            f"invalid task type {name!r}: up to {TYPE_MAX_LENGTH} characters of letters, "
            "digits and _ . : - /, not starting with a punctuation mark"
        )


class Registry:
    """Task type → handler. Thread-safe; a type has at most one handler."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}
        self._lock = threading.Lock()

    def register(
        self, name: str, func: Callable[..., Any], periodic: Periodic | None = None
    ) -> Handler:
        check_task_type(name)
        if not callable(func):
            raise HandlerError(f"the handler for {name!r} is not callable")
        handler = Handler(name, func, _is_async(func), _takes_context(name, func), periodic)
        with self._lock:
            existing = self._handlers.get(name)
            if existing is not None:
                # Re-running the same definition (a module reloaded) is not a second handler.
                if existing.definition == handler.definition:
                    self._handlers[name] = handler
                    return handler
                raise DuplicateHandler(name, existing.origin, handler.origin)
            self._handlers[name] = handler
        return handler

    def task(self, name: str, periodic: Periodic | None = None) -> Callable[[F], F]:
        """Decorator: register the function as the handler of task type ``name``."""

        def decorate(func: F) -> F:
            self.register(name, func, periodic)
            return func

        return decorate

    def periodic(self) -> list[Handler]:
        """The handlers that declare a schedule, by type."""
        with self._lock:
            return sorted(
                (h for h in self._handlers.values() if h.periodic is not None),
                key=lambda h: h.name,
            )

    def unregister(self, name: str) -> None:
        with self._lock:
            self._handlers.pop(name, None)

    def get(self, name: str) -> Handler:
        return self._handlers[name]

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._handlers)

    @property
    def has_sync_handlers(self) -> bool:
        with self._lock:
            return any(not h.is_async for h in self._handlers.values())

    def __contains__(self, name: object) -> bool:
        return name in self._handlers

    def __len__(self) -> int:
        return len(self._handlers)

    def __iter__(self) -> Iterator[Handler]:
        with self._lock:
            return iter(list(self._handlers.values()))


default_registry = Registry()
"""The registry ``@task`` fills and ``prismq-queue worker`` serves."""


def task(
    name: str,
    *,
    cron: str | None = None,
    timezone: str = SCHEDULE_TIMEZONE_DEFAULT,
    catch_up: str = SCHEDULE_CATCH_UP_DEFAULT,
    payload: dict[str, Any] | None = None,
    priority: int | None = None,
    registry: Registry | None = None,
) -> Callable[[F], F]:
    """Register a handler for task type ``name`` (CONTRACT §6)::

    @task("demo.echo")
    def echo(payload: dict, ctx: TaskContext) -> dict:
        return {"echo": payload}

    With ``cron`` (five fields, in ``timezone``), the type is also periodic (CONTRACT §9): a
    worker that imports the module creates or updates the schedule named after the type, and
    one task of the type, with ``payload``, is enqueued at each due time::

    @task("report.daily", cron="0 6 * * *", timezone="Europe/Prague")
    def daily(payload: dict) -> None: ...
    """
    periodic = None
    if cron is not None:
        periodic = Periodic(cron, timezone, catch_up, dict(payload or {}), priority)
    return (registry if registry is not None else default_registry).task(name, periodic)
