"""stats counts tasks per type and state from indexes (revision 0007), never from the rows.

The finished history is counted from ix_task_queue_finished_status_type alone; the live states
from their own partial indexes. The counts must agree with a plain GROUP BY over the table.
"""

from __future__ import annotations

from sqlalchemy import text

from queue_core.database import Database
from queue_core.repositories import LeaseRepository, TaskRepository
from queue_core.repositories._common import TASKS
from queue_core.repositories.counts import count_by_type


def _plain_counts(db: Database) -> dict[str, dict[str, int]]:
    from sqlalchemy import func, select

    by_type: dict[str, dict[str, int]] = {}
    with db.read() as conn:
        query = select(TASKS.c.type, TASKS.c.status, func.count()).group_by(
            TASKS.c.type, TASKS.c.status
        )
        for task_type, status, count in conn.execute(query):
            by_type.setdefault(task_type, {})[status] = count
    return by_type


def test_stats_counts_agree_with_the_table(db: Database) -> None:
    tasks, leases = TaskRepository(db), LeaseRepository(db)
    for n in range(4):
        tasks.enqueue(type="a", payload={"n": n})
    for n in range(3):
        tasks.enqueue(type="b", payload={"n": n}, max_attempts=1)
    done = leases.claim("w", ["a"], limit=2)
    leases.complete(done[0].lease, {"ok": True})
    failed = leases.claim("w", ["b"], limit=2)
    leases.fail(failed[0].lease, "boom", permanent=True)
    tasks.cancel(tasks.list(type="a", status="queued", limit=1)[0].task_id)
    retried = failed[0].task_id
    tasks.retry(retried)  # back to queued: leaves the finished index
    expected = _plain_counts(db)
    with db.read() as conn:
        assert count_by_type(conn) == expected
    stats = tasks.stats()
    assert stats.by_type == expected
    assert stats.total_tasks == 7
    assert (stats.queued_tasks, stats.leased_tasks) == (3, 2)
    assert (stats.completed_tasks, stats.failed_tasks, stats.cancelled_tasks) == (1, 0, 1)


def test_finished_counts_read_only_their_index_on_sqlite(sqlite_url: str) -> None:
    with Database(sqlite_url) as db:
        with db.write() as conn:
            conn.execute(
                text(
                    "WITH RECURSIVE seq(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM seq "
                    "WHERE x < 2000) INSERT INTO task_queue (type, status, finished_at_utc) "
                    "SELECT 'done', 'completed', 1 FROM seq"
                )
            )
            conn.execute(text("ANALYZE"))
        with db.read() as conn:
            detail = " ".join(
                row[-1]
                for row in conn.execute(
                    text(
                        "EXPLAIN QUERY PLAN SELECT type, status, count(*) FROM task_queue "
                        "WHERE finished_at_utc IS NOT NULL AND status IN "
                        "('cancelled', 'completed', 'failed') GROUP BY status, type"
                    )
                )
            )
        assert "COVERING INDEX ix_task_queue_finished_status_type" in detail, detail
