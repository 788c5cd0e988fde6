"""Module handlers the integration tests run, in this process, embedded, or in a worker
process (``--import tests.integration.handlers``).

Handlers coordinate with the tests through files, which work across processes: ``marker``
gets a line each time a handler starts, and a ``gate`` handler waits until its gate file
exists.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from workers.integration import module_handlers, register_module

GATE_TIMEOUT_SECONDS = 60.0
GATE_POLL_SECONDS = 0.02

compat_handlers = module_handlers  # the default: worker processes serve these too


def _mark(parameters: dict[str, Any]) -> None:
    marker = parameters.get("marker")
    if marker:
        with Path(marker).open("a", encoding="utf-8") as out:
            out.write(f"{parameters.get('label', 'started')}\n")


@register_module("compat.echo")
async def echo(parameters: dict[str, Any]) -> dict[str, Any]:
    _mark(parameters)
    return {"echo": parameters}


@register_module("compat.fail")
async def fail(parameters: dict[str, Any]) -> None:
    _mark(parameters)
    raise ValueError(parameters.get("message", "boom"))


@register_module("compat.sleep")
async def sleep(parameters: dict[str, Any]) -> float:
    _mark(parameters)
    seconds = float(parameters.get("seconds", 0.05))
    await asyncio.sleep(seconds)
    return seconds


@register_module("compat.gate")
async def gate(parameters: dict[str, Any]) -> str:
    """Runs until the gate file exists (or fails after GATE_TIMEOUT_SECONDS)."""
    _mark(parameters)
    gate_file = Path(parameters["gate"])
    loop = asyncio.get_running_loop()
    deadline = loop.time() + GATE_TIMEOUT_SECONDS
    while not gate_file.exists():
        if loop.time() > deadline:
            raise TimeoutError(f"gate {gate_file} never opened")
        await asyncio.sleep(GATE_POLL_SECONDS)
    return "opened"


def started_count(marker: Path) -> int:
    return len(marker.read_text(encoding="utf-8").splitlines()) if marker.exists() else 0
