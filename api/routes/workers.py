"""/api/queue/workers: the worker processes that registered."""

from __future__ import annotations

from fastapi import APIRouter, Response, Security

from api.deps import Workers
from api.errors import error_responses
from api.examples import WORKER_EXAMPLE, json_example
from api.responses import json_model
from api.security import bearer_scheme
from queue_core.schemas import WorkerInfo

router = APIRouter(
    prefix="/api/queue",
    tags=["workers"],
    dependencies=[Security(bearer_scheme)],
    responses=error_responses(401, 503),
)


@router.get(
    "/workers",
    response_model=list[WorkerInfo],
    summary="Registered workers",
    responses={200: {"content": json_example([WORKER_EXAMPLE])}},
)
def list_workers(workers: Workers) -> Response:
    """Every worker that registered, most recent heartbeat first. `status` is `active` while
    its heartbeats arrive, `stale` once they stop or the worker exits."""
    return json_model(workers.list())
