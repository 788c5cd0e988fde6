"""Input limits applied before a handler runs: the raw body size and the JSON nesting depth.

The payload limit itself (``payload_max_bytes``) is checked by the core on the parsed payload.
These guards run earlier so that a huge or absurdly nested body cannot exhaust memory or the
stack while it is being read or parsed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi import HTTPException, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import validation_problem
from queue_core.settings import QueueSettings
from queue_core.validation import json_depth, may_hold_big_numbers

# Room for the fields around a payload (type, compatibility, keys) in a one-task body.
ENVELOPE_ALLOWANCE_BYTES = 64 * 1024
# A batch body may carry this many maximal payloads; a larger batch must be split.
BATCH_BODY_PAYLOADS = 16
# Levels of a batch body above a payload: {"tasks": [{"payload": {...}}]}.
ENVELOPE_DEPTH = 3
BATCH_PATH_SUFFIX = "/tasks/batch"
_BODYLESS_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def body_limit(path: str, settings: QueueSettings) -> int:
    """The largest raw request body accepted on ``path``, in bytes."""
    if path.endswith(BATCH_PATH_SUFFIX):
        return BATCH_BODY_PAYLOADS * settings.payload_max_bytes + ENVELOPE_ALLOWANCE_BYTES
    return settings.payload_max_bytes + ENVELOPE_ALLOWANCE_BYTES


def body_depth_limit(settings: QueueSettings) -> int:
    return settings.json_max_depth + ENVELOPE_DEPTH


class BodySizeLimitMiddleware:
    """Answers 413 as soon as a body is known to be over its limit, before it is parsed.

    A declared ``Content-Length`` over the limit is refused without reading the body; a chunked
    body is counted as it arrives and refused at the first byte past the limit.
    """

    def __init__(self, app: ASGIApp, settings: QueueSettings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in _BODYLESS_METHODS:
            await self.app(scope, receive, send)
            return
        limit = body_limit(scope["path"], self.settings)
        declared = _content_length(scope)
        if declared == -1:
            await _reply(send, 400, "Content-Length is not a number")
            return
        if declared is not None and declared > limit:
            await _reply(send, 413, _too_large(limit))
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _reply(send, 413, _too_large(limit))
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(b"".join(chunks), receive), send)


def _too_large(limit: int) -> str:
    return f"request body is over the limit of {limit} bytes"


def _content_length(scope: Scope) -> int | None:
    """The declared length, None when absent, -1 when it is not a number."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                return -1
            return length if length >= 0 else -1
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _reply(send: Send, status: int, detail: str) -> None:
    body = orjson.dumps({"detail": detail})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                # The unread body makes the connection unusable for another request.
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class LimitedJSONRequest(Request):
    """Parses JSON with orjson (strict, recursion-safe) and refuses bodies nested too deep."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            # orjson.JSONDecodeError subclasses json.JSONDecodeError: FastAPI answers it with 422.
            body = await self.body()
            value = orjson.loads(body)
            if may_hold_big_numbers(body):
                # orjson reads an integer past 64 bits as a float: the value would change
                # silently. The standard parser keeps it exact, so the core refuses it (422).
                # (A rare body: only one with 19 digits in a row or an exponent of 18 or more.)
                value = json.loads(body)
            settings: QueueSettings = self.app.state.settings
            limit = body_depth_limit(settings)
            if json_depth(value, limit) > limit:
                # HTTPException, not RequestValidationError: FastAPI re-raises only the former
                # from body parsing. The detail keeps the 422 list shape.
                raise HTTPException(
                    422, [validation_problem(f"the JSON body is nested deeper than {limit} levels")]
                )
            self._json = value
        return self._json


def is_json_media_type(content_type: str | None) -> bool:
    if not content_type:
        return False
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


class LimitedJSONRoute(APIRoute):
    """The route class of the routers with JSON bodies: refuses a body that is not declared as
    JSON (415; FastAPI would answer a puzzling 422) and parses through LimitedJSONRequest."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        takes_body = self.body_field is not None

        async def limited(request: Request) -> Response:
            request = LimitedJSONRequest(request.scope, request.receive)
            if (
                takes_body
                and not is_json_media_type(request.headers.get("content-type"))
                and await request.body()
            ):
                return JSONResponse(
                    {"detail": "the body must be JSON: send Content-Type: application/json"},
                    status_code=415,
                )
            return await handler(request)

        return limited
