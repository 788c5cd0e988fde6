"""PRISMQ_QUEUE_AUDIT (CONTRACT §3): ``full`` writes every transition to task_logs;
``failures`` writes only retried, failed, cancelled, recovered and re-queued."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import ValidationError
from sqlalchemy import select

from queue_core.clock import ManualClock
from queue_core.database import Database
from queue_core.repositories import LeaseRepository, TaskLogRepository, TaskRepository
from queue_core.repositories._common import LOGS
from queue_core.schemas import TaskCreate
from queue_core.settings import QueueSettings


def _events(db: Database) -> list[str]:
    with db.read() as conn:
        rows = conn.execute(select(LOGS.c.details).order_by(LOGS.c.log_id)).all()
    return [(row.details or {}).get("event", "-") for row in rows]


@pytest.fixture(params=["full", "failures"])
def audited(request: pytest.FixtureRequest, db_url: str) -> Iterator[Database]:
    db = Database(db_url, QueueSettings(audit=request.param))
    yield db
    db.dispose()


def test_the_audit_mode_decides_which_transitions_are_logged(audited: Database) -> None:
    db, clock = audited, ManualClock()
    tasks, leases = TaskRepository(db, clock), LeaseRepository(db, clock)
    ok = tasks.enqueue(type="ok").task.task_id
    tasks.enqueue_many([TaskCreate(type="ok"), TaskCreate(type="ok", idempotency_key="k")])
    [claimed] = leases.claim("w", ["ok"])
    assert claimed.task_id == ok
    leases.complete(claimed.lease, "done")
    for task in leases.claim("w", ["ok"], limit=2):
        leases.release(task.lease)
    routine = _events(db)

    bad = tasks.enqueue(type="bad", max_attempts=2).task.task_id
    leases.fail(leases.claim("w", ["bad"])[0].lease, "boom")  # retried
    clock.advance(3600)
    leases.claim("w", ["bad"], lease_seconds=5)
    clock.advance(6)
    leases.recover_expired()  # no attempts left: recovered as failed
    tasks.retry(bad)  # re-queued by an operator
    running = leases.claim("w", ["bad"])[0]
    tasks.cancel(bad)  # cancel requested
    leases.fail(running.lease, "boom")  # ends cancelled
    TaskLogRepository(db, clock).add(ok, "a handler's own record")
    failures = _events(db)[len(routine) :]

    if db.settings.audit == "full":
        assert routine == [
            *["enqueued"] * 3,
            "leased",
            "completed",
            *["leased"] * 2,
            *["released"] * 2,
        ]
        assert failures[0] == "enqueued"
        failures = [event for event in failures if event not in ("enqueued", "leased")]
    else:
        assert routine == []
    assert failures == [
        "retried",
        "lease_expired",
        "requeued",
        "cancel_requested",
        "cancelled",
        "-",  # the handler's record
    ]


def test_the_audit_setting_is_read_and_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    assert QueueSettings().audit == "full"
    monkeypatch.setenv("PRISMQ_QUEUE_AUDIT", "failures")
    assert QueueSettings().audit == "failures"
    monkeypatch.setenv("PRISMQ_QUEUE_AUDIT", "none")
    with pytest.raises(ValidationError, match="audit"):
        QueueSettings()
