"""The public surface both task managers share: the old BackgroundTaskManager's methods."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from workers.integration.runs import Run


@runtime_checkable
class TaskManager(Protocol):
    def start_task(self, run: Run, coro: object = None) -> str:
        """Start (or enqueue) the run and return its run_id. Synchronous."""

    async def cancel_task(self, run_id: str) -> bool:
        """Cancel a run; False when the run is unknown or already finished."""

    async def wait_all(self, timeout: float | None = None) -> None:
        """Wait until no run started through this manager is active."""

    def get_active_task_count(self) -> int: ...

    def get_active_task_ids(self) -> list[str]: ...

    def is_task_active(self, run_id: str) -> bool: ...

    async def close(self) -> None:
        """Release what the manager holds (background loops, database connections)."""
