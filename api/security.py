"""Bearer API keys (CONTRACT §8): when keys are configured, every path needs one but /health and
the interactive docs (/docs, its static assets and /openapi.json), so that a person can open
the docs and use Swagger's "Authorize" button; every data route stays protected."""

from __future__ import annotations

import hmac

import orjson
from fastapi.security import HTTPBearer
from starlette.types import ASGIApp, Receive, Scope, Send

from api.docs import DOCS_PUBLIC_PATHS

PUBLIC_PATHS = frozenset({"/health"}) | DOCS_PUBLIC_PATHS


def is_ui_path(path: str) -> bool:
    return path == "/ui" or path.startswith("/ui/")


UNAUTHORIZED_DETAIL = "missing or invalid API key"

# Declares the scheme in the OpenAPI document (and the "Authorize" button in /docs). It never
# refuses anything itself: ApiKeyMiddleware does, for every path, documented or not.
bearer_scheme = HTTPBearer(
    auto_error=False,
    description="`Authorization: Bearer <key>`; required when `PRISMQ_QUEUE_API_KEYS` is set.",
)


def key_is_valid(presented: str, keys: list[str]) -> bool:
    """Compares against every key in constant time, so timing reveals neither key nor index."""
    candidate = presented.encode()
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(candidate, key.encode())
    return matched


def bearer_token(authorization: bytes | None) -> str | None:
    if authorization is None:
        return None
    try:
        text = authorization.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        return None
    scheme, _, token = text.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class ApiKeyMiddleware:
    def __init__(self, app: ASGIApp, keys: list[str]) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS or is_ui_path(scope["path"]):
            # The dashboard checks its own sessions (or a Bearer key) itself: api/ui/session.py.
            await self.app(scope, receive, send)
            return
        header = next((value for name, value in scope["headers"] if name == b"authorization"), None)
        token = bearer_token(header)
        if token is not None and key_is_valid(token, self.keys):
            await self.app(scope, receive, send)
            return
        body = orjson.dumps({"detail": UNAUTHORIZED_DETAIL})
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b"Bearer"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
