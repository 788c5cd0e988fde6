"""Move the old manager's unfinished runs into the queue (a plain script, no CLI needed).

Run it once the old in-memory process has stopped, before starting the app with
PRISMQ_QUEUE_TASK_MANAGER=queue:

    PRISMQ_QUEUE_DATABASE_URL=sqlite:///queue.db EXAMPLE_RUNS_FILE=runs.json \\
        python -m examples.migrate_runs

Runs ``queued`` or ``running`` in the run history are enqueued (a run that was running starts
again from the beginning: its coroutine died with the old process). Finished runs are left
alone. Running it twice is harmless: a run_id enters the queue once.
"""

from __future__ import annotations

import json

import examples.worker_module  # noqa: F401 - the handlers the migrated runs need
from examples.run_registry import JsonFileRunRegistry
from queue_core.settings import QueueSettings
from workers.integration import QueueTaskManager, open_queue_database
from workers.integration.migration import migrate_runs_to_queue


def main() -> int:
    registry = JsonFileRunRegistry()
    db = open_queue_database(QueueSettings())  # fails clearly if unreachable or unmigrated
    try:
        manager = QueueTaskManager(registry, db)
        report = migrate_runs_to_queue(registry.list_runs(), manager)
    finally:
        db.dispose()
    print(json.dumps(report.__dict__, indent=2, sort_keys=True))
    return 1 if report.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
