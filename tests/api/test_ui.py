"""The dashboard (/ui) over HTTP: pages, actions, sign-in, sessions, CSRF, escaping (CONTRACT §10).

The same rules are exercised in a real browser by tests/ui/test_browser.py.
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from queue_core.database import Database
from queue_core.repositories import LeaseRepository, TaskRepository
from queue_core.states import TaskStatus

KEY = "ui-test-key"
XSS = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "' onmouseover='alert(1)",
]
PAGES = ["/ui", "/ui/tasks", "/ui/tasks/1", "/ui/dead", "/ui/workers", "/ui/logout"]


def csrf_of(page_html: str) -> str:
    match = re.search(r'<meta name="csrf-token" content="([0-9a-f]+)">', page_html)
    assert match, "the page carries no CSRF token"
    return match.group(1)


def failed_task(
    db: Database, *, type: str = "demo.fail", error: str = "boom", **payload: str
) -> int:
    tasks = TaskRepository(db)
    leases = LeaseRepository(db)
    task_id = tasks.enqueue(type=type, payload=payload).task.task_id
    claimed = leases.claim("w-test", [type])
    leases.fail(claimed[0].lease, error, permanent=True)
    return task_id


@pytest.fixture
def keyed(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client(api_keys=f"{KEY}, another-key")


def sign_in(client: TestClient) -> str:
    """Signs in through the form; returns the session cookie's value."""
    page = client.get("/ui/login")
    assert page.status_code == 200
    response = client.post(
        "/ui/login",
        data={"key": KEY, "csrf_token": csrf_of(page.text), "next": "/ui/dead"},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/ui/dead"
    cookie = response.headers["set-cookie"]
    assert "prismq_ui_session=" in cookie
    lowered = cookie.lower()
    assert "httponly" in lowered
    assert "samesite=strict" in lowered
    assert "max-age=" in lowered
    assert "path=/ui" in lowered
    return str(client.cookies.get("prismq_ui_session"))


# --- without keys: open, but every POST still needs its CSRF token ---


def test_every_page_renders_without_keys(client: TestClient, db_for: Database) -> None:
    failed_task(db_for)
    for path in PAGES:
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith("text/html")
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert "prismq-queue" in response.text
    assert client.get("/ui/tasks/999").status_code == 404


def test_pages_load_nothing_from_outside_the_server(client: TestClient, db_for: Database) -> None:
    failed_task(db_for)
    for path in PAGES:
        page = client.get(path).text
        for url in re.findall(r'(?:src|href)="([^"]+)"', page):
            assert url.startswith(("/ui", "?")) or url == "data:,", (path, url)
    for asset in ("/ui/static/htmx.min.js", "/ui/static/dashboard.css"):
        assert client.get(asset).status_code == 200


def test_cancel_and_retry_need_the_csrf_token(client: TestClient, db_for: Database) -> None:
    tasks = TaskRepository(db_for)
    queued = tasks.enqueue(type="demo.echo").task.task_id
    page = client.get(f"/ui/tasks/{queued}")
    token = csrf_of(page.text)
    for data in ({}, {"csrf_token": "0" * 64}, {"csrf_token": token + "0"}):
        refused = client.post(f"/ui/tasks/{queued}/cancel", data=data, follow_redirects=False)
        assert refused.status_code == 403, data
        assert "CSRF" in refused.json()["detail"]
    assert tasks.get(queued).status is TaskStatus.QUEUED

    # the token belongs to the cookie: a browser without it (another site's form) is refused
    stranger = TestClient(client.app)
    refused = stranger.post(
        f"/ui/tasks/{queued}/cancel", data={"csrf_token": token}, follow_redirects=False
    )
    assert refused.status_code == 403
    assert tasks.get(queued).status is TaskStatus.QUEUED

    done = client.post(
        f"/ui/tasks/{queued}/cancel", data={"csrf_token": token}, follow_redirects=False
    )
    assert done.status_code == 303
    assert done.headers["location"] == f"/ui/tasks/{queued}?done=cancelled&task={queued}"
    assert tasks.get(queued).status is TaskStatus.CANCELLED
    assert "Task " + str(queued) + " cancelled." in client.get(done.headers["location"]).text

    # the header htmx sends works as well as the form field
    retried = client.post(
        f"/ui/tasks/{queued}/retry", headers={"X-CSRF-Token": token}, follow_redirects=False
    )
    assert retried.status_code == 303
    assert tasks.get(queued).status is TaskStatus.QUEUED


def test_actions_go_to_the_task_log_with_the_dashboard_as_actor(
    client: TestClient, db_for: Database
) -> None:
    tasks = TaskRepository(db_for)
    failed = failed_task(db_for)
    token = csrf_of(client.get("/ui/dead").text)
    response = client.post(
        f"/ui/tasks/{failed}/retry",
        data={"csrf_token": token, "next": "/ui/dead"},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert response.headers["location"] == f"/ui/dead?done=retried&task={failed}"
    assert tasks.get(failed).status is TaskStatus.QUEUED
    requeued = [log for log in tasks.logs(failed) if log.message == "requeued by operator"]
    assert [log.details and log.details.get("actor") for log in requeued] == ["dashboard"]

    response = client.post(
        f"/ui/tasks/{failed}/cancel", data={"csrf_token": token}, follow_redirects=False
    )
    assert response.status_code == 303
    cancelled = [log for log in tasks.logs(failed) if log.message == "cancelled"]
    assert [log.details and log.details.get("actor") for log in cancelled] == ["dashboard"]

    # REST actions record no dashboard actor
    other = failed_task(db_for)
    assert client.post(f"/api/queue/tasks/{other}/retry").status_code == 200
    assert all(not (log.details or {}).get("actor") for log in tasks.logs(other)), tasks.logs(other)


def test_an_impossible_action_says_why(client: TestClient, db_for: Database) -> None:
    tasks = TaskRepository(db_for)
    queued = tasks.enqueue(type="demo.echo").task.task_id
    token = csrf_of(client.get("/ui").text)
    response = client.post(f"/ui/tasks/{queued}/retry", data={"csrf_token": token})
    assert response.status_code == 409
    assert "cannot retry task" in response.text
    response = client.post("/ui/tasks/999/cancel", data={"csrf_token": token})
    assert response.status_code == 404


def test_task_list_filters_and_pages(client: TestClient, db_for: Database) -> None:
    tasks = TaskRepository(db_for)
    ids = [tasks.enqueue(type="page.me").task.task_id for _ in range(55)]
    other = tasks.enqueue(type="other.type").task.task_id
    page = client.get("/ui/tasks", params={"type": "page.me"}).text
    shown = [int(i) for i in re.findall(r'data-task-id="(\d+)"', page)]
    assert shown == sorted(ids, reverse=True)[:50]
    older = re.search(r'rel="next" href="([^"]+)"', page)
    assert older
    page2 = client.get(html.unescape(older.group(1))).text
    assert [int(i) for i in re.findall(r'data-task-id="(\d+)"', page2)] == sorted(ids)[:5][::-1]
    assert other not in shown
    queued = client.get("/ui/tasks", params={"status": "queued"}).text
    assert f'data-task-id="{other}"' in queued
    assert client.get("/ui/tasks", params={"status": "nonsense"}).status_code == 422
    assert client.get("/ui/tasks", params={"type": "<bad>"}).status_code == 422


# --- with keys: sign-in, sessions, logout ---


def test_pages_redirect_to_login_without_a_session(keyed: TestClient) -> None:
    for path in [*PAGES, "/ui/tasks?status=failed"]:
        response = keyed.get(path, follow_redirects=False)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/ui/login?next=/ui")


def test_xhr_and_json_requests_get_401_without_a_session(keyed: TestClient) -> None:
    for headers in (
        {"HX-Request": "true"},
        {"X-Requested-With": "XMLHttpRequest"},
        {"Accept": "application/json"},
    ):
        response = keyed.get("/ui", headers=headers, follow_redirects=False)
        assert response.status_code == 401, headers
        assert "detail" in response.json()
        assert response.headers["hx-redirect"] == "/ui/login"


def test_actions_without_a_session_are_refused(keyed: TestClient, db_for: Database) -> None:
    task_id = TaskRepository(db_for).enqueue(type="demo.echo").task.task_id
    token = csrf_of(keyed.get("/ui/login").text)  # a CSRF token alone is not a session
    response = keyed.post(
        f"/ui/tasks/{task_id}/cancel", data={"csrf_token": token}, follow_redirects=False
    )
    assert response.status_code == 303
    assert response.headers["location"].startswith("/ui/login")
    response = keyed.post(
        f"/ui/tasks/{task_id}/cancel", data={"csrf_token": token}, headers={"HX-Request": "1"}
    )
    assert response.status_code == 401
    assert TaskRepository(db_for).get(task_id).status is TaskStatus.QUEUED


def test_login_with_a_wrong_key_is_refused(keyed: TestClient) -> None:
    page = keyed.get("/ui/login")
    response = keyed.post(
        "/ui/login", data={"key": "wrong", "csrf_token": csrf_of(page.text)}, follow_redirects=False
    )
    assert response.status_code == 401
    assert "not valid" in response.text
    assert "prismq_ui_session" not in response.headers.get("set-cookie", "")
    assert keyed.get("/ui", follow_redirects=False).status_code == 303


def test_login_needs_the_csrf_token(keyed: TestClient) -> None:
    keyed.get("/ui/login")
    response = keyed.post("/ui/login", data={"key": KEY}, follow_redirects=False)
    assert response.status_code == 403


def test_login_never_redirects_off_the_dashboard(keyed: TestClient) -> None:
    page = keyed.get("/ui/login")
    for target in ("https://evil.example/", "//evil.example/ui", "/api/queue/tasks", "/ui\\x"):
        response = keyed.post(
            "/ui/login",
            data={"key": KEY, "csrf_token": csrf_of(page.text), "next": target},
            follow_redirects=False,
        )
        assert response.headers["location"] == "/ui", target


def test_a_session_opens_the_dashboard_and_csrf_still_guards_posts(
    keyed: TestClient, db_for: Database
) -> None:
    sign_in(keyed)
    task_id = TaskRepository(db_for).enqueue(type="demo.echo").task.task_id
    for path in PAGES:
        assert keyed.get(path, follow_redirects=False).status_code == 200, path
    assert keyed.get("/ui", headers={"HX-Request": "true"}).status_code == 200
    refused = keyed.post(f"/ui/tasks/{task_id}/cancel", follow_redirects=False)
    assert refused.status_code == 403
    token = csrf_of(keyed.get("/ui").text)
    done = keyed.post(
        f"/ui/tasks/{task_id}/cancel", data={"csrf_token": token}, follow_redirects=False
    )
    assert done.status_code == 303
    assert TaskRepository(db_for).get(task_id).status is TaskStatus.CANCELLED
    # the session is the dashboard's only: the REST API still wants its Bearer key
    assert keyed.get("/api/queue/stats").status_code == 401


def test_logout_ends_the_session_on_the_server(keyed: TestClient) -> None:
    value = sign_in(keyed)
    token = csrf_of(keyed.get("/ui").text)
    assert keyed.post("/ui/logout", follow_redirects=False).status_code == 403
    response = keyed.post("/ui/logout", data={"csrf_token": token}, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/login"
    # a client that kept the old cookie value is refused
    replay = TestClient(keyed.app)
    replay.cookies.set("prismq_ui_session", value, path="/ui")
    assert replay.get("/ui", follow_redirects=False).status_code == 303
    assert replay.get("/ui", headers={"HX-Request": "1"}).status_code == 401


def test_forged_and_tampered_session_cookies_are_refused(keyed: TestClient) -> None:
    value = sign_in(keyed)
    session_id, expires, signature = value.split(".")
    forged = [
        f"{session_id}.{int(expires) + 10**6}.{signature}",  # a longer life
        f"{session_id}x.{expires}.{signature}",
        f"{session_id}.{expires}.{'0' * len(signature)}",
        "not-a-session",
        "",
    ]
    for cookie in forged:
        other = TestClient(keyed.app)
        other.cookies.set("prismq_ui_session", cookie, path="/ui")
        assert other.get("/ui", follow_redirects=False).status_code == 303, cookie


def test_a_session_from_other_keys_is_refused(
    make_client: Callable[..., TestClient], keyed: TestClient
) -> None:
    value = sign_in(keyed)
    rekeyed = make_client(api_keys="a-new-key")
    rekeyed.cookies.set("prismq_ui_session", value, path="/ui")
    assert rekeyed.get("/ui", follow_redirects=False).status_code == 303


def test_a_bearer_key_opens_the_dashboard_too(keyed: TestClient) -> None:
    response = keyed.get("/ui", headers={"Authorization": f"Bearer {KEY}"})
    assert response.status_code == 200
    wrong = keyed.get("/ui", headers={"Authorization": "Bearer nope"}, follow_redirects=False)
    assert wrong.status_code == 303


def test_assets_and_login_need_no_session(keyed: TestClient) -> None:
    assert keyed.get("/ui/static/dashboard.css").status_code == 200
    assert keyed.get("/ui/login").status_code == 200


# --- stored XSS: every user-controlled string is escaped ---


@pytest.mark.parametrize("attack", XSS)
def test_user_strings_are_escaped_everywhere(
    client: TestClient, db_for: Database, attack: str
) -> None:
    # A type name cannot hold markup (TYPE_PATTERN), so the worst legal one is tried too.
    task_id = failed_task(db_for, error=attack, key=attack, **{attack: "value"})
    TaskRepository(db_for).enqueue(type="a-b.c:d/e_f", payload={"x": attack})
    with db_for.write() as conn:
        conn.execute(
            text("UPDATE task_queue SET type = :type WHERE id = :id"),
            {"type": attack, "id": task_id},
        )
    for path in [*PAGES, f"/ui/tasks/{task_id}", "/ui/tasks?status=failed"]:
        page = client.get(path).text
        assert attack not in page, path
    detail = client.get(f"/ui/tasks/{task_id}").text
    escaped = attack.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    escaped = escaped.replace('"', "&#34;").replace("'", "&#39;")
    assert escaped in detail  # shown as text: the error, the type, in the page's markup


def test_overview_counts_live_states_and_refreshes_finished_ones(
    client: TestClient, db_for: Database
) -> None:
    def count(page: str, name: str) -> int:
        match = re.search(rf'id="count-{name}">(\d+)<', page)
        assert match, name
        return int(match.group(1))

    tasks = TaskRepository(db_for)
    failed = failed_task(db_for)
    page = client.get("/ui").text
    assert (count(page, "failed"), count(page, "queued")) == (1, 0)
    tasks.enqueue(type="demo.echo")
    other = failed_task(db_for)  # finished elsewhere: shown once the cached count is old
    page = client.get("/ui").text
    assert (count(page, "failed"), count(page, "queued")) == (1, 1)
    token = csrf_of(page)
    client.post(f"/ui/tasks/{failed}/retry", data={"csrf_token": token})
    page = client.get("/ui").text  # the dashboard's own action refreshes it at once
    assert (count(page, "failed"), count(page, "queued")) == (1, 2)
    assert other


def test_overview_counts_expire(db_for: Database) -> None:
    from api.ui.counts import OverviewCounts
    from queue_core.repositories import DashboardRepository

    now = [0.0]
    counts = OverviewCounts(
        DashboardRepository(db_for), max_age_seconds=30, monotonic=lambda: now[0]
    )
    failed_task(db_for)
    assert counts.stats(0).failed_tasks == 1
    failed_task(db_for)
    assert counts.stats(0).failed_tasks == 1
    now[0] = 31.0
    assert counts.stats(0).failed_tasks == 1  # stale: served while a thread counts again
    deadline = time.monotonic() + 10
    while counts.stats(0).failed_tasks != 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert counts.stats(0).failed_tasks == 2
    assert counts.stats(0).by_type == {"demo.fail": {"failed": 2}}
    counts.invalidate()
    failed_task(db_for)
    assert counts.stats(0).failed_tasks == 3  # after an action: counted before the page
