"""Module handlers: the persistent replacement for the coroutines the old API was given.

The old ``start_task(run, coro)`` received a ready coroutine object. A coroutine cannot be
stored in a database or sent to another process, so the queue needs, for each kind of work
(the run's ``module_id``), an ``async def handler(parameters)`` registered in advance.
Whoever runs the work (an embedded worker slot, a separate worker process, or the in-memory
manager) calls ``handler(run.parameters)``: the parameters must carry everything the
coroutine's arguments carried.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any, TypeVar, cast, overload

from workers.registry import Registry, default_registry

log = logging.getLogger("prismq.queue.integration")

ModuleHandler = Callable[[dict[str, Any]], Awaitable[Any]]
H = TypeVar("H", bound=ModuleHandler)


class HandlerNotRegistered(LookupError):
    """A run names a module that has no registered handler."""

    def __init__(self, module_id: str, known: list[str]) -> None:
        listing = ", ".join(repr(m) for m in known) or "none"
        super().__init__(
            f"no handler is registered for module {module_id!r} (registered: {listing}); "
            f"decorate an `async def handler(parameters)` with @register_module({module_id!r}) "
            "in a module that both the web process and the workers import"
        )
        self.module_id = module_id


class ModuleHandlers:
    """module id → async handler. Registering two handlers for one module is an error.

    Each handler is also registered, under its module id as the task type, in a worker
    registry (by default the one ``@task`` fills and ``prismq-queue worker --import`` serves),
    so the workers that run the queue's tasks need nothing else. A handler may take a second
    argument with a default, ``ctx=None``: a worker passes its TaskContext, the in-memory
    manager nothing.
    """

    def __init__(self, worker_registry: Registry | None = None) -> None:
        self._handlers: dict[str, ModuleHandler] = {}
        self.worker_registry = worker_registry if worker_registry is not None else Registry()

    @overload
    def register(self, module_id: str) -> Callable[[H], H]: ...

    @overload
    def register(self, module_id: str, handler: H) -> H: ...

    def register(self, module_id: str, handler: H | None = None) -> H | Callable[[H], H]:
        def add(fn: H) -> H:
            if not inspect.iscoroutinefunction(cast(object, fn)):
                raise TypeError(
                    f"the handler for module {module_id!r} must be an `async def` function"
                )
            existing = self._handlers.get(module_id)
            if existing is not None and existing is not fn:
                raise ValueError(
                    f"module {module_id!r} already has a handler: {_name(existing)}; "
                    f"refusing {_name(fn)}"
                )
            self.worker_registry.register(module_id, fn)
            self._handlers[module_id] = fn
            return fn

        return add(handler) if handler is not None else add

    def unregister(self, module_id: str) -> None:
        if self._handlers.pop(module_id, None) is not None:
            self.worker_registry.unregister(module_id)

    def get(self, module_id: str) -> ModuleHandler:
        try:
            return self._handlers[module_id]
        except KeyError:
            raise HandlerNotRegistered(module_id, self.module_ids()) from None

    def module_ids(self) -> list[str]:
        return sorted(self._handlers)

    def coroutine_for(self, module_id: str, parameters: dict[str, Any]) -> Coroutine[Any, Any, Any]:
        """What the old callers built by hand: the handler called with the run's parameters."""
        result = self.get(module_id)(dict(parameters))
        if not inspect.iscoroutine(result):
            raise TypeError(f"the handler for module {module_id!r} did not return a coroutine")
        return result

    def __contains__(self, module_id: object) -> bool:
        return module_id in self._handlers

    def __iter__(self) -> Iterator[str]:
        return iter(self.module_ids())

    def __len__(self) -> int:
        return len(self._handlers)


module_handlers = ModuleHandlers(default_registry)
"""The process-wide registry that ``register_module`` fills; it feeds the default worker
registry, so ``prismq-queue worker --import your.handlers`` runs these modules."""

register_module = module_handlers.register


def discard_awaitable(awaitable: object) -> None:
    """Dispose of a coroutine the queue cannot run, so Python does not warn that it was
    never awaited. A Future or Task is cancelled instead; anything else is left alone."""
    if inspect.iscoroutine(awaitable):
        awaitable.close()
    elif isinstance(awaitable, asyncio.Future):
        awaitable.cancel()


def _name(fn: Callable[..., Any]) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"
