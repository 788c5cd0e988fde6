"""An existing FastAPI backend, switched to the queue without rewriting its callers.

The routes (examples/web.py) keep calling ``start_task`` / ``cancel_task``; the settings pick
the manager at start-up:

    PRISMQ_QUEUE_TASK_MANAGER=in-memory   # the old behaviour (default)
    PRISMQ_QUEUE_TASK_MANAGER=queue       # persistent: tasks go to the queue database
    PRISMQ_QUEUE_TASK_MANAGER_FALLBACK=fail|in-memory   # if the queue is down at start-up

This app only enqueues; worker processes run the work:

    prismq-queue db upgrade
    PRISMQ_QUEUE_TASK_MANAGER=queue uvicorn examples.fastapi_app:app
    prismq-queue worker --import examples.worker_module

For one box without a separate worker process, see examples/embedded_app.py.
"""

from __future__ import annotations

import os

from fastapi import FastAPI

import examples.worker_module  # noqa: F401 - registers the module handlers start_task checks
from examples.run_registry import JsonFileRunRegistry
from examples.web import router
from workers import WorkerConfig
from workers.integration import create_task_manager
from workers.integration.lifespan import task_manager_lifespan

LEASE_SECONDS_ENV = "EXAMPLE_LEASE_SECONDS"


def create_app(*, embedded_workers: bool = False) -> FastAPI:
    registry = JsonFileRunRegistry()
    worker_config = WorkerConfig(lease_seconds=float(os.environ.get(LEASE_SECONDS_ENV, "30")))
    app = FastAPI(
        title="example backend",
        lifespan=task_manager_lifespan(
            lambda: create_task_manager(registry),
            embedded_workers=embedded_workers,
            worker_config=worker_config,
        ),
    )
    app.state.run_registry = registry
    app.include_router(router)
    return app


app = create_app()
