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

from workers.config import WorkerConfig
from workers.context import TaskContext
from workers.errors import DuplicateHandler, HandlerError, PermanentError
from workers.registry import Handler, Registry, default_registry, task
from workers.runtime import Worker

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
