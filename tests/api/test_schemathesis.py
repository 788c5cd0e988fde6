"""Property-based fuzzing of every operation from the app's own /openapi.json (schemathesis).

Bounded to tens of examples per operation, on both backends. Any 5xx fails, and so does a
response whose status, content type, headers or body the document does not declare.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.types import Receive, Scope, Send

from api import create_app
from queue_core.database import Database
from queue_core.settings import sqlite_url_for

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


class CurrentApp:
    """The ASGI app schemathesis calls; each test points it at an app on that test's database.

    (schemathesis.pytest.from_fixture would do this, but does not run on pytest 9.)
    """

    def __init__(self) -> None:
        # Serves the OpenAPI document while the schema loads; it never touches this database.
        self.app: FastAPI = create_app(database=Database(sqlite_url_for(Path("unused.db"))))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


current = CurrentApp()
schema = schemathesis.openapi.from_asgi("/openapi.json", current)


@pytest.fixture
def app_on_backend(db_url: str) -> Iterator[None]:
    db = Database(db_url)
    previous, current.app = current.app, create_app(database=db)
    try:
        yield
    finally:
        current.app = previous
        db.dispose()


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_conforms_to_its_schema(
    case: schemathesis.Case, app_on_backend: None
) -> None:
    case.call_and_validate(checks=CHECKS)
