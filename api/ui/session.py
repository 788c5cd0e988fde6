"""Who may use the dashboard, and the CSRF guard on every state-changing request (CONTRACT §10).

Two cookies, both ``HttpOnly``, ``SameSite=Strict`` and scoped to ``/ui``:

- ``prismq_ui_csrf``: a random value every page sets once. Each form carries
  ``HMAC(secret, value)`` as ``csrf_token`` (htmx sends it as ``X-CSRF-Token``); a POST whose
  token does not match its cookie is refused with 403. Another site can neither read the
  cookie nor make the browser send it, so it cannot forge the token.
- ``prismq_ui_session`` (only when ``PRISMQ_QUEUE_API_KEYS`` is set): ``id.expiry.signature``,
  signed with a secret derived from the configured keys (changing the keys ends every
  session). The server keeps the SHA-256 of each live id in ``dashboard_sessions``; logging
  out deletes it, so the old cookie value is refused afterwards by every server process.

A ``Authorization: Bearer <key>`` header is accepted in place of a session, as on the REST API.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import parse_qs, quote

from fastapi import Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from api.security import bearer_token, is_ui_path, key_is_valid
from queue_core.clock import Clock, to_micros, utcnow
from queue_core.repositories import DashboardSessionRepository
from queue_core.settings import UI_SESSION_SECONDS

UI_PREFIX = "/ui"
LOGIN_PATH = f"{UI_PREFIX}/login"
SESSION_COOKIE = "prismq_ui_session"
CSRF_COOKIE = "prismq_ui_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
UNAUTHENTICATED_DETAIL = f"sign in to the dashboard at {LOGIN_PATH}"
CSRF_DETAIL = "missing or invalid CSRF token: reload the page and try again"
FORM_MAX_BYTES = 64 * 1024
_OPEN_SECRET = b"prismq-queue dashboard without keys"


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a dashboard path on this server, never another site."""
    if target and is_ui_path(target) and "//" not in target and "\\" not in target:
        return target
    return UI_PREFIX


class NotSignedIn(Exception):
    """A protected /ui request without a session: a page redirects, an XHR gets 401."""


class CsrfRefused(Exception):
    pass


@dataclass
class UiUser:
    """What a dashboard request carries: whether sign-in is on, and the page's CSRF token."""

    keyed: bool
    csrf_token: str
    new_csrf_cookie: str | None = None


class UiAuth:
    def __init__(
        self, keys: list[str], sessions: DashboardSessionRepository, clock: Clock = utcnow
    ) -> None:
        self.keys = keys
        self.sessions = sessions
        self.clock = clock
        material = "\0".join(sorted(keys)).encode()
        self.secret = (
            hashlib.sha256(b"prismq-queue dashboard\0" + material).digest()
            if keys
            else _OPEN_SECRET
        )

    @property
    def keyed(self) -> bool:
        return bool(self.keys)

    # --- CSRF ---

    def csrf_token_for(self, cookie: str) -> str:
        return hmac.new(self.secret, b"csrf\0" + cookie.encode(), hashlib.sha256).hexdigest()

    def user(self, request: Request) -> UiUser:
        """The CSRF token for this request's page, minting the cookie when it has none."""
        cookie = request.cookies.get(CSRF_COOKIE)
        new_cookie = None
        if not cookie or len(cookie) > 200:
            cookie = new_cookie = secrets.token_urlsafe(32)
        return UiUser(self.keyed, self.csrf_token_for(cookie), new_cookie)

    async def check_csrf(self, request: Request) -> dict[str, list[str]]:
        """Refuses (CsrfRefused) a request whose token does not match its cookie; returns
        the url-encoded form it carried."""
        body = await request.body()
        form: dict[str, list[str]] = {}
        content_type = request.headers.get("content-type", "")
        if (
            body
            and len(body) <= FORM_MAX_BYTES
            and content_type.startswith("application/x-www-form-urlencoded")
        ):
            form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        presented = request.headers.get(CSRF_HEADER) or next(iter(form.get(CSRF_FIELD, [])), "")
        cookie = request.cookies.get(CSRF_COOKIE)
        if not cookie or not presented:
            raise CsrfRefused
        if not hmac.compare_digest(presented.encode(), self.csrf_token_for(cookie).encode()):
            raise CsrfRefused
        return form

    # --- sessions ---

    def _signature(self, session_id: str, expires: int) -> str:
        message = f"session\0{session_id}.{expires}".encode()
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()

    @staticmethod
    def _hash(session_id: str) -> str:
        return hashlib.sha256(session_id.encode()).hexdigest()

    def sign_in(self, key: str) -> tuple[str, int] | None:
        """A new session for a valid key: (cookie value, max-age seconds), else None."""
        if not key_is_valid(key, self.keys):
            return None
        session_id = secrets.token_urlsafe(32)
        expires_at = self.clock() + timedelta(seconds=UI_SESSION_SECONDS)
        expires = to_micros(expires_at) // 1_000_000
        self.sessions.create(self._hash(session_id), expires_at)
        value = f"{session_id}.{expires}.{self._signature(session_id, expires)}"
        return value, UI_SESSION_SECONDS

    def _session_id(self, cookie: str | None) -> str | None:
        """The id of a well-signed, unexpired session cookie (not yet checked server-side)."""
        if not cookie or len(cookie) > 300:
            return None
        parts = cookie.split(".")
        if len(parts) != 3 or not parts[1].isdigit():
            return None
        session_id, expires_text, signature = parts
        expires = int(expires_text)
        if not hmac.compare_digest(signature, self._signature(session_id, expires)):
            return None
        if expires * 1_000_000 <= to_micros(self.clock()):
            return None
        return session_id

    def signed_in(self, request: Request) -> bool:
        if not self.keyed:
            return True
        token = bearer_token(request.headers.get("authorization", "").encode("latin-1") or None)
        if token is not None and key_is_valid(token, self.keys):
            return True
        session_id = self._session_id(request.cookies.get(SESSION_COOKIE))
        return session_id is not None and self.sessions.is_active(self._hash(session_id))

    def sign_out(self, request: Request) -> None:
        session_id = self._session_id(request.cookies.get(SESSION_COOKIE))
        if session_id is not None:
            self.sessions.end(self._hash(session_id))


def wants_json(request: Request) -> bool:
    """An XHR (htmx or fetch) or a JSON client, as opposed to a browser loading a page."""
    headers = request.headers
    if headers.get("hx-request") or headers.get("x-requested-with"):
        return True
    accept = headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def not_signed_in_response(request: Request) -> Response:
    if wants_json(request):
        return JSONResponse(
            {"detail": UNAUTHENTICATED_DETAIL},
            status_code=401,
            headers={"HX-Redirect": LOGIN_PATH},
        )
    target = request.url.path
    if request.url.query:
        target += "?" + request.url.query
    if request.method != "GET":
        target = UI_PREFIX
    return RedirectResponse(f"{LOGIN_PATH}?next={quote(target, safe='/')}", status_code=303)


def set_cookie(
    response: Response, name: str, value: str, max_age: int | None, secure: bool
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=UI_PREFIX,
        httponly=True,
        samesite="strict",
        secure=secure,
    )
