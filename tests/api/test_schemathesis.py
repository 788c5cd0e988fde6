"""Property-based fuzzing of every operation from the app's own /openapi.json (schemathesis).

Bounded to tens of examples per operation, on both backends. Any 5xx fails, and so does a
response whose status, content type, headers or body the document does not declare, a
schema-valid request refused or a schema-violating one accepted, and a wrong answer to an
undeclared method. The app runs with an API key, the configuration the document describes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    allow_header_conformance,
    content_type_conformance,
    ignored_auth,
    missing_required_header,
    negative_data_rejection,
    not_a_server_error,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)
from schemathesis.config import SchemathesisConfig
from starlette.types import Receive, Scope, Send

from api import create_app
from queue_core.database import Database
from queue_core.settings import QueueSettings, sqlite_url_for

API_KEY = "fuzz-key"
# schemathesis' default for positive_data_acceptance.
POSITIVE_STATUSES = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    # Conformance of the behaviour to the document (issue 12 item 21): what the schema allows is
    # accepted, what it forbids is refused, undeclared methods are 405 with a true Allow
    # header, and a route that declares the bearer key refuses a request without it.
    positive_data_acceptance,
    negative_data_rejection,
    unsupported_method,
    allow_header_conformance,
    missing_required_header,
    ignored_auth,
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
# The fuzzed app has API keys, the configuration the document describes (every data route
# needs a bearer key); schemathesis sends the key, and leaves it out in its negative cases.
schema = schemathesis.openapi.from_asgi(
    "/openapi.json",
    current,
    config=SchemathesisConfig.from_dict(
        {
            "auth": {"openapi": {"HTTPBearer": {"bearer": API_KEY}}},
            "operations": [
                {
                    # Whether a cron expression names real times ("61 * * * *" does not) and a
                    # time zone exists in the IANA database is not something JSON Schema can
                    # state: a schema-valid schedule may still be 422 (CONTRACT §8).
                    "include-path-regex": "^/api/queue/schedules$",
                    "include-method": "POST",
                    "checks": {
                        "positive_data_acceptance": {
                            "expected-statuses": [*POSITIVE_STATUSES, "422"]
                        }
                    },
                },
                {
                    # depends_on must name tasks that exist (CONTRACT §8): a schema-valid id
                    # that names none is 422.
                    "include-path-regex": "^/api/queue/(tasks|enqueue|tasks/batch)$",
                    "include-method": "POST",
                    "checks": {
                        "positive_data_acceptance": {
                            "expected-statuses": [*POSITIVE_STATUSES, "422"]
                        }
                    },
                },
            ],
        }
    ),
)


@pytest.fixture
def app_on_backend(db_url: str) -> Iterator[None]:
    db = Database(db_url, QueueSettings(api_keys=API_KEY))
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
