"""/health (never needs a key) and /metrics (Prometheus text)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response, Security
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from api.deps import DatabaseDep
from api.examples import json_example
from api.models import Health, HealthUnavailable
from api.responses import json_model
from api.security import UNAUTHORIZED_DETAIL, bearer_scheme
from queue_core.errors import QueueError

logger = logging.getLogger("api")

router = APIRouter(tags=["system"])

METRICS_EXAMPLE = (
    "# HELP prismq_queue_tasks Tasks by status and type.\n"
    "# TYPE prismq_queue_tasks gauge\n"
    'prismq_queue_tasks{status="queued",type="demo.echo"} 3.0\n'
)


@router.get(
    "/health",
    response_model=Health,
    summary="Liveness and database check",
    response_description="The process is up and the database answers `SELECT 1`.",
    responses={
        200: {"content": json_example({"status": "ok"})},
        503: {
            "model": HealthUnavailable,
            "description": "The database does not answer.",
            "content": json_example({"status": "unavailable", "detail": "database unavailable"}),
        },
    },
)
def health(db: DatabaseDep) -> Response:
    """Never needs an API key, so load balancers and orchestrators can probe it."""
    try:
        with db.read() as conn:
            conn.execute(text("SELECT 1"))
    except (QueueError, SQLAlchemyError) as exc:
        logger.warning("health check failed: %s", exc)
        return json_model(HealthUnavailable(detail="database unavailable"), 503)
    return json_model(Health())


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=PlainTextResponse,
    dependencies=[Security(bearer_scheme)],
    responses={
        200: {
            "description": "Prometheus text exposition format.",
            "content": {"text/plain": {"schema": {"type": "string"}, "example": METRICS_EXAMPLE}},
        },
        # Spelled out: with a text response class, FastAPI would file the error model under
        # text/plain.
        401: {
            "description": "Missing or wrong API key (only when `PRISMQ_QUEUE_API_KEYS` is set).",
            "content": {
                "application/json": {
                    "schema": {"$ref": "#/components/schemas/ErrorResponse"},
                    "example": {"detail": UNAUTHORIZED_DETAIL},
                }
            },
        },
    },
)
def metrics(request: Request) -> PlainTextResponse:
    """Queue depth by status and type, oldest queued age and active workers (read from the
    database at scrape time), and this process's HTTP request counts and latencies."""
    registry: CollectorRegistry = request.app.state.metrics_registry
    return PlainTextResponse(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
