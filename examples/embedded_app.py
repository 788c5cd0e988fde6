"""Embedded mode: the same backend with worker slots inside the web process.

For single-box installs: no separate worker process to run. The lifespan starts the slots
with the app and stops them gracefully with it (running handlers get a grace period; what is
left goes back to the queue and runs again after a restart, or on any other worker).

    prismq-queue db upgrade
    PRISMQ_QUEUE_TASK_MANAGER=queue python -m examples.embedded_app --port 8080

Worker processes can still join at any time (``prismq-queue worker --import
examples.worker_module``): they share the queue with the embedded slots.
"""

from __future__ import annotations

import argparse

import uvicorn

from examples.fastapi_app import create_app

app = create_app(embedded_workers=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")


if __name__ == "__main__":
    main()
