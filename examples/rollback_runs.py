"""Roll back from the queue to the in-memory manager (a plain script).

    PRISMQ_QUEUE_DATABASE_URL=sqlite:///queue.db EXAMPLE_RUNS_FILE=runs.json \\
        python -m examples.rollback_runs [--cancel-running] [--timeout SECONDS]

Stop the web processes first and set PRISMQ_QUEUE_TASK_MANAGER=in-memory for their restart.
Then this script:

- takes every run still queued out of the queue (cancelling its task) and runs it here, in
  memory, from its module handler, until it finishes;
- waits for runs that workers are running now to finish there (keep the workers up until
  the script ends), or with ``--cancel-running`` asks their workers to stop them.

An in-memory run lives in one process: this script runs the moved runs to completion itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json

import examples.worker_module  # noqa: F401 - the handlers the runs need
from examples.run_registry import JsonFileRunRegistry
from queue_core.settings import QueueSettings
from workers.integration import InMemoryTaskManager, QueueTaskManager, open_queue_database
from workers.integration.migration import rollback_to_in_memory


async def rollback(cancel_running: bool, timeout: float | None) -> dict[str, list[str]]:
    registry = JsonFileRunRegistry()
    db = open_queue_database(QueueSettings())
    source = QueueTaskManager(registry, db)
    target = InMemoryTaskManager(registry)
    try:
        report = await rollback_to_in_memory(
            source, target, running="cancel" if cancel_running else "wait", timeout=timeout
        )
        await target.wait_all()
    finally:
        await source.close()
        db.dispose()
    return report.__dict__


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cancel-running", action="store_true")
    parser.add_argument("--timeout", type=float, default=None)
    args = parser.parse_args(argv)
    report = asyncio.run(rollback(args.cancel_running, args.timeout))
    print(json.dumps(report, indent=2, sort_keys=True))
    return 1 if report["still_running"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
