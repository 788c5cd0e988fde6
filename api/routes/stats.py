"""/api/queue/stats: the queue as a whole."""

from __future__ import annotations

from fastapi import APIRouter, Response, Security

from api.deps import Tasks
from api.errors import error_responses
from api.examples import STATS_EXAMPLE, json_example
from api.responses import json_model
from api.security import bearer_scheme
from queue_core.schemas import QueueStats

router = APIRouter(
    prefix="/api/queue",
    tags=["stats"],
    dependencies=[Security(bearer_scheme)],
    responses=error_responses(401, 503),
)


@router.get(
    "/stats",
    response_model=QueueStats,
    summary="Queue statistics",
    responses={200: {"content": json_example(STATS_EXAMPLE)}},
)
def queue_stats(tasks: Tasks) -> Response:
    """Counts by state and by type, the age of the oldest due task, and active workers."""
    return json_model(tasks.stats())
