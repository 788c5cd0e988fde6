"""The routes both example apps share: the old backend's run endpoints, now on a TaskManager.

The routes only talk to ``request.app.state.task_manager``: whether that is the in-memory
manager or the queue, and where the work runs, is decided at start-up by the settings.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field

from examples.run_registry import JsonFileRunRegistry, run_to_json
from workers.integration import HandlerNotRegistered, Run, TaskManager

router = APIRouter()


class RunRequest(BaseModel):
    module_id: str
    parameters: dict[str, Any] = Field(default_factory=dict)
    run_id: str | None = None
    """Send the same run_id again after a timeout: the run is not started twice."""


def manager_of(request: Request) -> TaskManager:
    manager: TaskManager = request.app.state.task_manager
    return manager


def registry_of(request: Request) -> JsonFileRunRegistry:
    registry: JsonFileRunRegistry = request.app.state.run_registry
    return registry


# async def: start_task is synchronous but must run on the event loop that owns the manager
# (the in-memory manager schedules the run there; the queue manager syncs the registry there).
@router.post("/runs", status_code=202)
async def start_run(body: RunRequest, request: Request) -> dict[str, Any]:
    run = Run(body.run_id or uuid.uuid4().hex, body.module_id, body.parameters)
    try:
        run_id = manager_of(request).start_task(run)
    except HandlerNotRegistered as exc:
        raise HTTPException(422, str(exc)) from exc
    stored = registry_of(request).get_run(run_id)
    return run_to_json(stored or run)


@router.get("/runs/active")
async def active_runs(request: Request) -> dict[str, Any]:
    manager = manager_of(request)
    return {"count": manager.get_active_task_count(), "run_ids": manager.get_active_task_ids()}


@router.get("/runs/{run_id}")
def get_run(run_id: str, request: Request) -> dict[str, Any]:
    run = registry_of(request).get_run(run_id)
    if run is None:
        raise HTTPException(404, f"run {run_id} not found")
    return run_to_json(run)


@router.post("/runs/{run_id}/cancel")
async def cancel_run(run_id: str, request: Request) -> dict[str, Any]:
    return {"run_id": run_id, "cancelled": await manager_of(request).cancel_task(run_id)}
