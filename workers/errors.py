"""Errors a handler raises on purpose, and the ones registration raises."""

from __future__ import annotations


class PermanentError(Exception):
    """Raise from a handler to fail the task at once, without retries (the dead-letter state)."""


class HandlerError(ValueError):
    """A handler cannot be registered: a bad name or signature."""


class DuplicateHandler(HandlerError):
    """Another handler is already registered under this task type."""

    def __init__(self, name: str, existing: str, new: str) -> None:
        super().__init__(
            f"task type {name!r} already has a handler ({existing}); cannot also register {new}"
        )
        self.name = name
