"""Request and response bodies that only the REST API has; the task models live in queue_core."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.examples import TASK_CREATE_EXAMPLE
from queue_core.schemas import Task, TaskCreate
from queue_core.settings import BATCH_MAX


class ErrorResponse(BaseModel):
    """The body of every error but 422 (whose `detail` is a list of problems)."""

    detail: str = Field(examples=["task 42 not found"])


class ValidationProblem(BaseModel):
    type: str = Field(examples=["greater_than_equal"])
    loc: list[str | int] = Field(description="Where: `body`, `query` or `path`, then the field.")
    msg: str
    ctx: dict[str, Any] | None = None


class ValidationErrorResponse(BaseModel):
    """The body of a 422: FastAPI's validation format, without echoing the input back."""

    detail: list[ValidationProblem]


class TaskBatchCreate(BaseModel):
    """Up to 1,000 tasks enqueued in one transaction: all of them or none."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"tasks": [TASK_CREATE_EXAMPLE, {"type": "demo.sleep", "payload": {"s": 1}}]}
            ]
        },
    )

    tasks: Annotated[list[TaskCreate], Field(min_length=1, max_length=BATCH_MAX)]


class TaskBatch(BaseModel):
    tasks: list[Task]


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class HealthUnavailable(BaseModel):
    status: Literal["unavailable"] = "unavailable"
    detail: str = Field(examples=["database unavailable"])
