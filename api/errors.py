"""Every error the API can answer, as one JSON shape with a `detail`, and the handlers that map
the core's errors to HTTP statuses. No handler ever sends a traceback."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from api.examples import json_example
from api.models import ErrorResponse, ValidationErrorResponse
from queue_core.errors import (
    DatabaseUnavailable,
    DependencyNotFound,
    IdempotencyConflict,
    InvalidSchedule,
    InvalidTransition,
    ScheduleExists,
    ScheduleNotFound,
    SchemaMissing,
    TaskNotFound,
)
from queue_core.repositories import InvalidPayload, PayloadTooLarge
from queue_core.repositories.types import InvalidTaskType
from queue_core.settings import RETRY_AFTER_SECONDS

logger = logging.getLogger("api")

INTERNAL_ERROR = "internal error"

_DESCRIPTIONS = {
    401: "Missing or wrong API key (only when `PRISMQ_QUEUE_API_KEYS` is set).",
    404: "No task has this id.",
    409: "The request conflicts with the task's state or an earlier request.",
    413: "The body, payload or compatibility document is over the size limit.",
    415: "The body is not declared as JSON (`Content-Type: application/json`).",
    503: "The database is busy or unreachable (retry after `Retry-After` seconds), or has no "
    "queue schema yet.",
}
_EXAMPLES = {
    401: "missing or invalid API key",
    404: "task 42 not found",
    409: "cannot retry task 42: it is queued",
    413: "payload is 2097152 bytes; the limit is 1048576",
    415: "the body must be JSON: send Content-Type: application/json",
    503: "database unavailable: database is locked",
}

_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"description": "`Bearer`", "schema": {"type": "string"}}},
    503: {
        "Retry-After": {
            "description": "Seconds to wait before retrying; sent when the database is busy "
            "or unreachable, not when its schema is missing.",
            "schema": {"type": "integer"},
        }
    },
}


def error_responses(*codes: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for these error statuses, with an example each.

    ``descriptions`` overrides a description or example by status, as ``e409="..."``.
    """
    responses: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        example = descriptions.get(f"e{code}", _EXAMPLES[code])
        responses[code] = {
            "model": ErrorResponse,
            "description": descriptions.get(f"d{code}", _DESCRIPTIONS[code]),
            "content": json_example({"detail": example}),
        }
        if code in _HEADERS:
            responses[code]["headers"] = _HEADERS[code]
    return responses


VALIDATION_ERROR_RESPONSE: dict[str, Any] = {
    "model": ValidationErrorResponse,
    "description": "Invalid input: the body is not JSON or nested too deep, or a field or "
    "parameter is out of range. `detail` lists the problems.",
    "content": json_example(
        {
            "detail": [
                {
                    "type": "greater_than_equal",
                    "loc": ["body", "priority"],
                    "msg": "Input should be greater than or equal to 1",
                    "ctx": {"ge": 1},
                }
            ]
        }
    ),
}


def error_body(detail: str) -> dict[str, str]:
    return {"detail": detail}


def validation_problem(message: str, loc: tuple[str | int, ...] = ("body",)) -> dict[str, Any]:
    """One entry of a 422 `detail` list, in the shape FastAPI gives its own validation errors."""
    return {"type": "value_error", "loc": list(loc), "msg": message}


def install_error_handlers(app: FastAPI) -> None:
    def plain(code: int, headers: dict[str, str] | None = None) -> Any:
        async def handler(request: Request, exc: Exception) -> JSONResponse:
            return JSONResponse(error_body(str(exc)), status_code=code, headers=headers)

        return handler

    app.add_exception_handler(TaskNotFound, plain(404))
    app.add_exception_handler(InvalidTransition, plain(409))
    app.add_exception_handler(IdempotencyConflict, plain(409))
    app.add_exception_handler(ScheduleNotFound, plain(404))
    app.add_exception_handler(ScheduleExists, plain(409))
    app.add_exception_handler(InvalidSchedule, _invalid_payload)
    app.add_exception_handler(DependencyNotFound, _invalid_payload)
    app.add_exception_handler(InvalidTaskType, _invalid_payload)
    app.add_exception_handler(PayloadTooLarge, plain(413))
    app.add_exception_handler(
        DatabaseUnavailable,
        plain(503, {"Retry-After": str(RETRY_AFTER_SECONDS)}),
    )
    app.add_exception_handler(SchemaMissing, plain(503))
    app.add_exception_handler(RequestValidationError, _request_invalid)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(InvalidPayload, _invalid_payload)
    app.add_exception_handler(DataError, _data_error)
    app.add_exception_handler(Exception, _internal_error)


async def _request_invalid(request: Request, exc: Exception) -> JSONResponse:
    # FastAPI's own shape, less the echo of the offending input: a 1 MiB body would come
    # back whole, and payloads may hold secrets that should not travel to logs and proxies.
    assert isinstance(exc, RequestValidationError)
    problems = [{k: v for k, v in error.items() if k != "input"} for error in exc.errors()]
    return JSONResponse({"detail": jsonable_encoder(problems)}, status_code=422)


async def _http_error(request: Request, exc: Exception) -> Any:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 405:
        # Starlette's Allow names the methods of the first route on the path only; one path
        # has a route per method (GET and POST /tasks), so every matching route is asked.
        exc.headers = {**(exc.headers or {}), "Allow": ", ".join(allowed_methods(request))}
    return await http_exception_handler(request, exc)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves on the request's path (``app.state.routes``: every
    route, those of the included routers too)."""
    methods: set[str] = set()
    for route in request.app.state.routes:
        route_methods = getattr(route, "methods", None)
        if route_methods and route.matches(request.scope)[0] != Match.NONE:
            methods |= route_methods
    return sorted(methods)


async def _invalid_payload(request: Request, exc: Exception) -> JSONResponse:
    # The same list shape as every other 422, so a client parses one format.
    return JSONResponse(
        {"detail": [validation_problem(str(exc))]},
        status_code=422,
    )


async def _data_error(request: Request, exc: Exception) -> JSONResponse:
    # The database refused a value the schema allows, e.g. a NUL character PostgreSQL cannot
    # store in text. That is the client's input, so 422; the driver's message stays in the log.
    logger.info("database rejected a value on %s %s: %s", request.method, request.url.path, exc)
    message = "a value cannot be stored (for example a NUL character, or a number out of range)"
    return JSONResponse(
        {"detail": [validation_problem(message)]},
        status_code=422,
    )


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(error_body(INTERNAL_ERROR), status_code=500)


__all__ = [
    "INTERNAL_ERROR",
    "error_body",
    "error_responses",
    "install_error_handlers",
    "validation_problem",
]
