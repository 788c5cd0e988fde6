"""What handlers receive: the repositories and database the app was built with.

The getters are ``async def`` so FastAPI runs them on the event loop: a sync dependency would
cost a thread-pool hop per request just to read an attribute.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from queue_core.database import Database
from queue_core.repositories import (
    ScheduleRepository,
    TaskRepository,
    TypeRepository,
    WorkerRepository,
)


async def _database(request: Request) -> Database:
    db: Database = request.app.state.database
    return db


async def _tasks(request: Request) -> TaskRepository:
    tasks: TaskRepository = request.app.state.tasks
    return tasks


async def _workers(request: Request) -> WorkerRepository:
    workers: WorkerRepository = request.app.state.workers
    return workers


def schedules_of(request: Request) -> ScheduleRepository:
    """The app's schedule repository (REST and dashboard flow-control routes)."""
    schedules: ScheduleRepository = request.app.state.schedules
    return schedules


def types_of(request: Request) -> TypeRepository:
    """The app's task-type repository (REST and dashboard flow-control routes)."""
    types: TypeRepository = request.app.state.types
    return types


DatabaseDep = Annotated[Database, Depends(_database)]
Tasks = Annotated[TaskRepository, Depends(_tasks)]
Workers = Annotated[WorkerRepository, Depends(_workers)]
