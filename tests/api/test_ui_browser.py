"""The dashboard in a real browser: headless Chromium (Debian's `chromium`) driven by Playwright,
against a real `prismq-queue api` server with API keys set.

Skips, saying why, where Playwright or a Chromium binary is missing (`.ci/run` installs both).
Set PRISMQ_QUEUE_TEST_CHROMIUM to use another Chromium binary.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from queue_core.database import Database
from queue_core.repositories import LeaseRepository, TaskRepository
from queue_core.settings import sqlite_url_for
from queue_core.states import TaskStatus
from tests.api.conftest import (
    Server,
    child_env,
    cli_command,
    free_port,
    start_process,
    wait_until_serving,
)

KEY = "browser-test-key"
XSS_PAYLOAD = "<script>alert(1)</script>"
XSS_ERROR = "\"><img src=x onerror=alert(1)> ' onmouseover='alert(2)"
CHROMIUM_ENV = "PRISMQ_QUEUE_TEST_CHROMIUM"
TIMEOUT_MS = 20_000

playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="Playwright is not installed (pip install -e '.[dev]')"
)


def chromium_path() -> str | None:
    candidates = [os.environ.get(CHROMIUM_ENV), "chromium", "chromium-browser", "google-chrome"]
    for candidate in candidates:
        if candidate and (found := shutil.which(candidate)):
            return found
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    path = chromium_path()
    if path is None:
        pytest.skip(
            "no Chromium binary: install Debian's `chromium` (apt-get install -y chromium) "
            f"or set {CHROMIUM_ENV}"
        )
    with playwright_api.sync_playwright() as playwright:
        # Chromium refuses to run as root with its sandbox on (CI containers run as root).
        root = hasattr(os, "geteuid") and os.geteuid() == 0
        args = ["--no-sandbox"] if root or sys.platform.startswith("linux") else []
        launched = playwright.chromium.launch(executable_path=path, headless=True, args=args)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    opened.set_default_timeout(TIMEOUT_MS)
    dialogs: list[str] = []

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    opened.on("dialog", on_dialog)
    opened.dialogs = dialogs
    yield opened
    context.close()
    assert dialogs == [], f"a script injected through task data ran: {dialogs}"


@pytest.fixture(scope="module")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> str:
    """One database for the module's server (each test makes tasks of its own)."""
    target = tmp_path_factory.mktemp("browser") / "queue.db"
    shutil.copyfile(sqlite_template, target)
    return sqlite_url_for(target)


@pytest.fixture(scope="module")
def server(sqlite_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One real `prismq-queue api` server for the module: starting one costs seconds."""
    port = free_port()
    log = tmp_path_factory.mktemp("browser-server") / "api.log"
    argv = cli_command("api", "--port", str(port), "--database-url", sqlite_url)
    process = start_process(argv, log, child_env(PRISMQ_QUEUE_API_KEYS=KEY))
    started = Server(process, f"http://127.0.0.1:{port}", log)
    try:
        wait_until_serving(started)
        yield started
    finally:
        started.stop()


def rest(server: Server) -> httpx.Client:
    return httpx.Client(
        base_url=server.base_url, headers={"Authorization": f"Bearer {KEY}"}, timeout=10
    )


def sign_in(page: Any, server: Server) -> None:
    page.goto(f"{server.base_url}/ui")
    assert page.url.startswith(f"{server.base_url}/ui/login")
    page.fill("input[name=key]", KEY)
    page.click("button[type=submit]")
    page.wait_for_url(f"{server.base_url}/ui")
    assert page.locator("h1").inner_text() == "Overview"


def test_sign_in_see_a_task_open_it_and_cancel_it(
    page: Any, server: Server, sqlite_url: str
) -> None:
    page.goto(f"{server.base_url}/ui/login")
    page.fill("input[name=key]", "not-the-key")
    page.click("button[type=submit]")
    assert "That key is not valid." in page.inner_text("main")
    sign_in(page, server)

    with rest(server) as client:
        created = client.post(
            "/api/queue/tasks",
            json={"type": "demo.sleep", "payload": {"note": XSS_PAYLOAD}, "run_after_utc": None},
        )
    assert created.status_code == 201
    task_id = created.json()["task_id"]

    page.click("nav >> text=Tasks")
    row = page.locator(f"tr[data-task-id='{task_id}']")
    assert "queued" in row.inner_text()
    row.locator(f"a[href='/ui/tasks/{task_id}']").click()
    page.wait_for_url(f"{server.base_url}/ui/tasks/{task_id}")
    assert XSS_PAYLOAD in page.inner_text("#payload")  # shown as text, not run

    page.click(f"[data-action='cancel-{task_id}']")
    page.wait_for_url(f"**/ui/tasks/{task_id}?done=cancelled*")
    assert f"Task {task_id} cancelled." in page.inner_text("main")
    assert "cancelled" in page.inner_text("h1")

    with Database(sqlite_url) as db:
        tasks = TaskRepository(db)
        assert tasks.get(task_id).status is TaskStatus.CANCELLED
        actors = [(log.details or {}).get("actor") for log in tasks.logs(task_id)]
        assert "dashboard" in actors


def test_retry_a_dead_letter_in_two_clicks_from_the_overview(
    page: Any, server: Server, sqlite_url: str
) -> None:
    with Database(sqlite_url) as db:
        tasks = TaskRepository(db)
        leases = LeaseRepository(db)
        task_id = tasks.enqueue(type="demo.fail", payload={"x": XSS_ERROR}).task.task_id
        leases.fail(leases.claim("w-1", ["demo.fail"])[0].lease, XSS_ERROR, permanent=True)
    sign_in(page, server)

    page.click("a.card[href='/ui/dead']")  # click 1: the failed count
    page.wait_for_url(f"{server.base_url}/ui/dead")
    row = page.locator(f"tr[data-task-id='{task_id}']")
    assert XSS_ERROR.splitlines()[0][:40] in row.inner_text()
    row.locator("td.error").hover()  # an attribute that broke out would fire here
    row.locator(f"[data-action='retry-{task_id}']").click()  # click 2: retry
    page.wait_for_url(f"**/ui/dead?done=retried&task={task_id}")
    assert f"Task {task_id} re-queued." in page.inner_text("main")
    assert page.locator(f"tr[data-task-id='{task_id}']").count() == 0

    with Database(sqlite_url) as db:
        assert TaskRepository(db).get(task_id).status is TaskStatus.QUEUED

    page.click(f"text=Task {task_id} re-queued.")  # the notice is plain text, nothing more
    page.goto(f"{server.base_url}/ui/tasks/{task_id}")
    assert XSS_ERROR in page.inner_text("#error-message")
    page.locator("#error-message").hover()


def test_logout_ends_the_session(page: Any, server: Server) -> None:
    sign_in(page, server)
    cookies = {c["name"]: c for c in page.context.cookies()}
    session = cookies["prismq_ui_session"]
    assert session["httpOnly"] is True
    assert session["sameSite"] == "Strict"
    assert session["expires"] > 0
    page.click("header >> text=Log out")
    page.wait_for_url(f"{server.base_url}/ui/login")
    # the old cookie value, put back, is refused by the server
    page.context.add_cookies([{**session, "expires": session["expires"]}])
    page.goto(f"{server.base_url}/ui/workers")
    assert page.url.startswith(f"{server.base_url}/ui/login")
    response = httpx.get(
        f"{server.base_url}/ui",
        cookies={"prismq_ui_session": session["value"]},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 401


def test_every_page_renders_in_the_browser_and_runs_no_injected_script(
    page: Any, server: Server, sqlite_url: str
) -> None:
    """Type names, payloads and errors full of markup, on every page: nothing runs (the page
    fixture fails the test on any dialog), and no page logs a console error (a CSP violation
    or a missing asset would)."""
    with rest(server) as client:
        task_id = client.post("/api/queue/tasks", json={"type": "demo.echo"}).json()["task_id"]
    evil_type = "<script>alert('type')</script>\"><img src=x onerror=alert(3)>"
    with Database(sqlite_url) as db:
        tasks = TaskRepository(db)
        leases = LeaseRepository(db)
        evil = tasks.enqueue(type="evil.type", payload={XSS_ERROR: XSS_PAYLOAD}).task.task_id
        leases.fail(leases.claim("w-2", ["evil.type"])[0].lease, XSS_PAYLOAD, permanent=True)
        with db.write() as conn:  # the REST API refuses such a name; raw SQL does not
            conn.execute(
                text("UPDATE task_queue SET type = :t WHERE id = :id"), {"t": evil_type, "id": evil}
            )
    sign_in(page, server)
    errors: list[str] = []
    page.on(
        "console", lambda message: errors.append(message.text) if message.type == "error" else None
    )
    for path, heading in (
        ("/ui", "Overview"),
        ("/ui/tasks", "Tasks"),
        (f"/ui/tasks/{task_id}", f"Task #{task_id}"),
        (f"/ui/tasks/{evil}", f"Task #{evil}"),
        ("/ui/dead", "Dead letters"),
        ("/ui/workers", "Workers"),
        ("/ui/schedules", "Schedules"),
        ("/ui/types", "Types"),
    ):
        page.goto(f"{server.base_url}{path}")
        assert page.locator("h1").inner_text().startswith(heading), path
        for cell in page.locator(".type, td.error, pre").all()[:20]:
            cell.hover()
        assert errors == [], (path, errors)
    page.goto(f"{server.base_url}/ui/tasks/{evil}")
    assert evil_type in page.inner_text("h1")  # shown as text
    assert XSS_PAYLOAD in page.inner_text("#error-message")


def test_the_overview_refresh_goes_to_sign_in_once_the_session_ends(
    page: Any, server: Server, sqlite_url: str
) -> None:
    """The overview refreshes itself with htmx; when the session ends on the server, that
    XHR gets 401 with HX-Redirect, and the browser lands on the sign-in form."""
    sign_in(page, server)
    with Database(sqlite_url) as db, db.write() as conn:
        conn.execute(text("DELETE FROM dashboard_sessions"))
    page.wait_for_url(f"{server.base_url}/ui/login", timeout=TIMEOUT_MS)
    assert page.locator("h1").inner_text() == "Sign in"
