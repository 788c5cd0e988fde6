"""Running the guarded transition statements and the task_logs INSERT of a dialect's SQL.

One statement per outcome kind for a whole batch (``guarded_sql.py`` says what each kind
does; the dialect's SQL module says how a batch is bound), and one INSERT for all the
task_logs rows of a transaction. Both dialects use this with their own SQL module.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from types import ModuleType
from typing import Any

import orjson

from queue_core.dialects import GuardedResult, GuardedRow, LogRow

CANCELLED_MESSAGE = "cancelled by user"
"""error_message of a task that ended cancelled because its cancellation was requested."""


class GuardedStatements:
    def __init__(self, sql: ModuleType) -> None:
        self.sql = sql
        self._statements = {kind: sql.dbapi_sql(text) for kind, text in sql.GUARDED_SQL.items()}
        self._insert_logs = sql.dbapi_sql(sql.INSERT_LOGS_SQL)

    def set_state_if_leased_many(
        self,
        cursor: Any,
        kind: str,
        rows: Sequence[GuardedRow],
        now: datetime,
        lease_until: datetime | None = None,
    ) -> list[GuardedResult]:
        if not rows:
            return []
        sql = self.sql
        bind_time = sql.bind_time
        params = sql.bind_guarded(
            [
                (
                    row.task_id,
                    row.worker_id,
                    row.lease_token,
                    row.message,
                    row.result_json,
                    None if row.at is None else bind_time(row.at),
                )
                for row in rows
            ]
        )
        params["now"] = bind_time(now)
        params["cancelled_message"] = CANCELLED_MESSAGE
        params["lease_until"] = None if lease_until is None else bind_time(lease_until)
        cursor.execute(self._statements[kind], params)
        return [
            GuardedResult(row[0], str(row[1]), bool(row[2]), int(row[3]), int(row[4]), bool(row[5]))
            for row in cursor.fetchall()
        ]

    def insert_logs(self, cursor: Any, rows: Sequence[LogRow]) -> None:
        if not rows:
            return
        bind_time = self.sql.bind_time
        cursor.execute(
            self._insert_logs,
            self.sql.bind_logs(
                [
                    (
                        row.task_id,
                        bind_time(row.at_utc),
                        row.level,
                        row.message,
                        None if row.details is None else orjson.dumps(row.details).decode(),
                    )
                    for row in rows
                ]
            ),
        )
