"""The REST API (CONTRACT §8): ``create_app`` builds the FastAPI application.

This package imports ``queue_core`` and never ``workers``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from api.app import create_app, create_app_from_env

__all__ = ["create_app", "create_app_from_env"]


def __getattr__(name: str) -> Any:
    """The app factories load on first use: `prismq-queue --help` imports api.commands
    without FastAPI."""
    if name in __all__:
        from api import app

        value = getattr(app, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'api' has no attribute {name!r}")
