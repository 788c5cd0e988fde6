"""The REST API (CONTRACT §8): ``create_app`` builds the FastAPI application.

This package imports ``queue_core`` and never ``workers``.
"""

from api.app import create_app, create_app_from_env

__all__ = ["create_app", "create_app_from_env"]
