"""The dashboard's schedules and types pages, their actions, and dependencies on a task's page."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy import text

from queue_core.database import Database
from queue_core.repositories import ScheduleRepository, TaskRepository, TypeRepository
from tests.api.test_ui import XSS, csrf_of


def test_types_pause_and_resume(client: TestClient, db_for: Database) -> None:
    TaskRepository(db_for).enqueue(type="report.daily")
    types = TypeRepository(db_for)
    page = client.get("/ui/types")
    assert page.status_code == 200
    assert 'data-type="report.daily"' in page.text
    token = csrf_of(page.text)
    refused = client.post("/ui/types/pause", data={"type": "report.daily"})
    assert refused.status_code == 403
    done = client.post(
        "/ui/types/pause",
        data={"type": "report.daily", "csrf_token": token},
        follow_redirects=False,
    )
    assert done.status_code == 303
    assert types.get("report.daily").paused is True
    assert "Type report.daily paused." in client.get(done.headers["location"]).text
    client.post("/ui/types/resume", data={"type": "report.daily", "csrf_token": token})
    assert types.get("report.daily").paused is False
    types.set_limits("report.daily", max_running=3)
    assert re.search(r">3</td>", client.get("/ui/types").text)


def test_schedules_pause_resume_and_run(client: TestClient, db_for: Database) -> None:
    schedules = ScheduleRepository(db_for)
    schedules.add(name="nightly", type="report.daily", cron="0 6 * * *", timezone="Europe/Prague")
    page = client.get("/ui/schedules")
    assert 'data-schedule="nightly"' in page.text
    assert "Europe/Prague" in page.text
    token = csrf_of(page.text)
    assert client.post("/ui/schedules/run", data={"name": "nightly"}).status_code == 403
    client.post("/ui/schedules/pause", data={"name": "nightly", "csrf_token": token})
    assert schedules.get("nightly").paused is True
    client.post("/ui/schedules/resume", data={"name": "nightly", "csrf_token": token})
    assert schedules.get("nightly").paused is False
    run = client.post(
        "/ui/schedules/run", data={"name": "nightly", "csrf_token": token}, follow_redirects=False
    )
    assert run.status_code == 303
    task_id = int(run.headers["location"].rsplit("task=", 1)[1])
    tasks = TaskRepository(db_for)
    assert tasks.get(task_id).schedule == "nightly"
    assert any((log.details or {}).get("actor") == "dashboard" for log in tasks.logs(task_id))
    missing = client.post("/ui/schedules/run", data={"name": "nope", "csrf_token": token})
    assert missing.status_code == 404


def test_a_task_page_links_its_dependencies(client: TestClient, db_for: Database) -> None:
    tasks = TaskRepository(db_for)
    first = tasks.enqueue(type="step.one").task.task_id
    second = tasks.enqueue(type="step.two", depends_on=[first]).task.task_id
    page = client.get(f"/ui/tasks/{second}").text
    assert f'href="/ui/tasks/{first}"' in page
    assert "Depends on" in page


def test_schedule_and_type_names_are_escaped(client: TestClient, db_for: Database) -> None:
    """The API refuses markup in these names; a row written by hand must still be harmless."""
    tasks = TaskRepository(db_for)
    for number, attack in enumerate(XSS):
        ScheduleRepository(db_for).add(name=f"s{number}", type="report.daily", cron="* * * * *")
        task_id = tasks.enqueue(type=f"t{number}").task.task_id
        with db_for.write() as conn:
            conn.execute(
                text("UPDATE schedules SET name = :a, type = :a, timezone = :a WHERE name = :n"),
                {"a": attack, "n": f"s{number}"},
            )
            conn.execute(
                text("UPDATE task_queue SET type = :a WHERE id = :id"), {"a": attack, "id": task_id}
            )
    for path in ("/ui/schedules", "/ui/types", "/ui"):
        page = client.get(path)
        assert page.status_code == 200, path
        for attack in XSS:
            assert attack not in page.text, (path, attack)
