"""The `worker` command, as registered in the ``prismq_queue.commands`` entry points.

Light on purpose: ``prismq-queue --help`` imports it; workers.cli loads only when the command
runs.
"""

from queue_core.cli.options import LazyCommand

worker = LazyCommand(
    "workers.cli:worker_command",
    "Run a worker: claim due tasks of the imported handlers' types and run them.",
)
