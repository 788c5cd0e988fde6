"""The worker runtime: register handlers with ``@task``, run them with ``prismq-queue worker``.

```python
from workers import task, TaskContext, PermanentError

@task("demo.echo")
def echo(payload: dict, ctx: TaskContext) -> dict:
    return {"echo": payload}
```

To run workers inside another program: ``Worker(WorkerConfig(...)).start()`` and
``worker.stop(grace)``; see docs/workers.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workers.config import WorkerConfig
    from workers.context import TaskContext
    from workers.errors import DuplicateHandler, HandlerError, PermanentError
    from workers.registry import Handler, Registry, default_registry, task
    from workers.runtime import Worker

# The names load on first use (PEP 562): `prismq-queue --help` imports workers.commands
# without paying for the runtime.
_HOME = {
    "WorkerConfig": "workers.config",
    "TaskContext": "workers.context",
    "DuplicateHandler": "workers.errors",
    "HandlerError": "workers.errors",
    "PermanentError": "workers.errors",
    "Handler": "workers.registry",
    "Registry": "workers.registry",
    "default_registry": "workers.registry",
    "task": "workers.registry",
    "Worker": "workers.runtime",
}

__all__ = [
    "DuplicateHandler",
    "Handler",
    "HandlerError",
    "PermanentError",
    "Registry",
    "TaskContext",
    "Worker",
    "WorkerConfig",
    "default_registry",
    "task",
]


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'workers' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value
