"""The `api` and `up` commands, as registered in the ``prismq_queue.commands`` entry points.

Light on purpose: ``prismq-queue --help`` imports it; api.cli (FastAPI, uvicorn) loads only
when one of the commands runs.
"""

from queue_core.cli.options import LazyCommand

api = LazyCommand("api.cli:api_command", "Serve the REST API (docs at /docs).")
up = LazyCommand(
    "api.cli:up_command",
    "Migrate, then run one worker and serve the API: a first run in one command.",
)
