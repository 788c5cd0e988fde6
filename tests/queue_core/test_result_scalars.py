"""A handler may return any JSON value; bare numbers must read back as they were written.

On SQLite a column declared JSON has NUMERIC affinity and turned the text ``2.0`` into a
number the JSON decoder could not read; JSON text columns are declared TEXT there.
"""

from __future__ import annotations

from typing import Any

import pytest

from queue_core.database import Database
from queue_core.repositories import LeaseRepository, TaskRepository


@pytest.mark.parametrize(
    "value", [2.0, 3, -0.5, 1e300, "7", "2.0", True, False, None, [1, 2.5], {"a": 1}]
)
def test_any_json_result_round_trips(db: Database, value: Any) -> None:
    tasks, leases = TaskRepository(db), LeaseRepository(db)
    task_id = tasks.enqueue(type="t").task.task_id
    [claimed] = leases.claim("w", ["t"])
    leases.complete(claimed.lease, value)
    result = tasks.get(task_id).result
    assert result == value
    assert type(result) is type(value)
