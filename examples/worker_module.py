"""The worker module: the module handlers that both the web app and the workers import.

Run it in a worker process (from the repository root):

    prismq-queue worker --import examples.worker_module
    prismq-queue worker --import examples.worker_module --burst   # drain, then exit

Each ``@register_module`` handler is also a worker task type of the same name, so nothing
else is needed for ``prismq-queue worker`` to run these modules.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from workers import PermanentError
from workers.integration import register_module


@register_module("example.greet")
async def greet(parameters: dict[str, Any]) -> dict[str, str]:
    name = parameters.get("name")
    if not isinstance(name, str) or not name:
        raise PermanentError("parameters.name must be a non-empty string")  # no retry helps
    return {"greeting": f"Hello, {name}!"}


@register_module("example.slow")
async def slow(parameters: dict[str, Any]) -> dict[str, float]:
    """Sleeps ``seconds``; appends a line to ``marker`` (a file path) when it starts, so
    tests can see where and how often it ran."""
    marker = parameters.get("marker")
    if marker:
        with Path(marker).open("a", encoding="utf-8") as out:
            out.write("started\n")
    seconds = float(parameters.get("seconds", 1.0))
    await asyncio.sleep(seconds)
    return {"slept": seconds}
