"""The FastAPI application factory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from api.docs import OPENAPI_PATH, install_docs
from api.errors import install_error_handlers
from api.limits import BodySizeLimitMiddleware
from api.metrics import RequestMetricsMiddleware, new_registry
from api.routes import schedules, stats, system, tasks, workers
from api.security import ApiKeyMiddleware
from api.ui import install_ui
from queue_core.database import Database
from queue_core.repositories import (
    ScheduleRepository,
    TaskRepository,
    TypeRepository,
    WorkerRepository,
)
from queue_core.schemas import JSON_VALUE_SCHEMA, JSON_VALUE_SCHEMA_NAME
from queue_core.settings import QueueSettings

logger = logging.getLogger("api")

TITLE = "prismq-queue"
DESCRIPTION = """\
A persistent task queue. Producers enqueue tasks; workers claim them under a lease, run them
and record the outcome.

Every error body is JSON with a `detail` field: a string, or for 422 a list of problems.
When `PRISMQ_QUEUE_API_KEYS` is set, every path but `/health`, `/docs` (with its assets) and
`/openapi.json` needs `Authorization: Bearer <key>`: use "Authorize" on this page. The
operator dashboard is at `/ui` (it asks for a key once).
"""


def create_app(
    settings: QueueSettings | None = None, *, database: Database | None = None
) -> FastAPI:
    """Build the REST API.

    ``database``, when given, stays the caller's to dispose; otherwise the app opens one from
    ``settings`` and disposes it at shutdown. ``settings`` default to the database's, else to
    the ``PRISMQ_QUEUE_*`` environment.
    """
    if settings is None:
        settings = database.settings if database is not None else QueueSettings()
    owns_database = database is None
    db = database if database is not None else Database(settings=settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if owns_database:
            db.dispose()

    app = FastAPI(
        title=TITLE,
        description=DESCRIPTION,
        version=_version(),
        docs_url=None,  # served by install_docs from local assets
        redoc_url=None,  # ReDoc would need a CDN
        openapi_url=OPENAPI_PATH,
        lifespan=lifespan,
    )
    _publish_document_schema(app)
    task_repository = TaskRepository(db)
    app.state.settings = settings
    app.state.database = db
    app.state.tasks = task_repository
    app.state.workers = WorkerRepository(db)
    app.state.schedules = ScheduleRepository(db, tasks=task_repository)
    app.state.types = TypeRepository(db)
    registry, request_metrics = new_registry(task_repository)
    app.state.metrics_registry = registry

    routers = [module.router for module in (tasks, schedules, stats, workers, system)]
    for router in routers:
        app.include_router(router)
    install_docs(app)
    install_ui(app, db, settings)
    # The metrics label requests with these routes' templates. The routers' own route lists
    # are used because an app's included routers need not expose theirs.
    labelled_routes = [route for router in routers for route in router.routes] + list(app.routes)
    app.state.routes = labelled_routes  # the Allow header of a 405 lists what they serve
    install_error_handlers(app)

    # Starlette wraps in reverse order: the last added runs first. From the outside in:
    # CORS (answers preflights), metrics (sees every status), API keys, body size.
    app.add_middleware(BodySizeLimitMiddleware, settings=settings)
    keys = settings.api_key_list()
    if keys:
        app.add_middleware(ApiKeyMiddleware, keys=keys)
    app.add_middleware(RequestMetricsMiddleware, metrics=request_metrics, routes=labelled_routes)
    origins = cors_origins(settings)
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    return app


def _publish_document_schema(app: FastAPI) -> None:
    """Adds the JSON value schema the payload and compatibility fields refer to."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()  # caches itself in app.openapi_schema
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            schemas[JSON_VALUE_SCHEMA_NAME] = JSON_VALUE_SCHEMA
        assert app.openapi_schema is not None
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app_from_env() -> FastAPI:
    """The factory uvicorn imports in each worker process (`api.app:create_app_from_env`).

    The CLI passes its options through ``PRISMQ_QUEUE_*`` variables, which the processes
    uvicorn spawns inherit.
    """
    return create_app(QueueSettings())


def cors_origins(settings: QueueSettings) -> list[str]:
    if not settings.cors_origins:
        return []
    return [origin.strip() for origin in settings.cors_origins.split(",") if origin.strip()]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("prismq-queue")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "0"
