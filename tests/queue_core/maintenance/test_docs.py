"""The SQLite-to-PostgreSQL script of docs/operations.md works.

Its `example: cli` blocks run in tests/test_docs_examples.py, with every other page's.
"""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy import select

from queue_core.database import Database
from queue_core.repositories import TaskRepository
from queue_core.repositories._common import TASKS
from queue_core.schemas import TaskCreate

MOVED = 1200  # more than one page of 1000
DOCS = Path(__file__).resolve().parents[3] / "docs"
MIGRATION_BLOCK = re.compile(
    r"<!-- example: python-sqlite-to-postgresql -->\s*```python\n(.*?)```", re.DOTALL
)


def test_sqlite_to_postgresql_script(db_url: str, sqlite_url: str) -> None:
    """The operations.md script, from an SQLite queue to the parametrised backend."""
    source = Database(sqlite_url)
    old = TaskRepository(source)
    specs = [
        TaskCreate(type="move", payload={"n": n}, priority=1 + n % 7, idempotency_key=f"k{n}")
        for n in range(MOVED)
    ]
    old.enqueue_many(specs)
    old.enqueue(type="move", payload={"delayed": True}, run_after_utc=old.get(1).run_after_utc)
    [done] = old.list(limit=1)
    old.cancel(done.task_id)  # not queued: not moved
    source.dispose()

    [script] = MIGRATION_BLOCK.findall((DOCS / "operations.md").read_text(encoding="utf-8"))
    script = script.replace('"sqlite:///C:/Data/PrismQ/queue/queue.db"', repr(sqlite_url))
    script = script.replace('"postgresql+psycopg://queue@db.internal/queue"', repr(db_url))
    namespace: dict[str, object] = {}
    exec(compile(script, "operations.md", "exec"), namespace)
    for value in namespace.values():
        if isinstance(value, TaskRepository):
            value.db.dispose()

    target = Database(db_url)
    try:
        stats = TaskRepository(target).stats()
        assert stats.queued_tasks == stats.total_tasks == MOVED
        with target.read() as conn:
            rows = conn.execute(select(TASKS).where(TASKS.c.idempotency_key == "k1199")).all()
        [row] = rows
        assert row.payload == {"n": 1199}
        assert row.priority == 1 + 1199 % 7
    finally:
        target.dispose()
