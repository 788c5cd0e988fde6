"""`prismq-queue worker` (CONTRACT §7): load handler modules and run a worker until stopped."""

from __future__ import annotations

import importlib
import sys

import click

from queue_core.cli.options import database_option, parse_json_object
from queue_core.cli.options import database_url as checked_database_url
from queue_core.settings import (
    CONCURRENCY_DEFAULT,
    LEASE_SECONDS_DEFAULT,
    LEASE_SECONDS_MIN,
    POLL_INTERVAL_DEFAULT,
    SHUTDOWN_GRACE_SECONDS_DEFAULT,
)
from queue_core.states import STRATEGY_DEFAULT, SchedulingStrategy
from workers.defaults import PREFETCH_DEFAULT
from workers.logs import LOG_FORMATS, LOG_LEVELS, configure_logging
from workers.registry import default_registry
from workers.runtime import Worker, WorkerConfig, new_worker_id


def import_handler_modules(modules: tuple[str, ...]) -> None:
    """Import each module (its ``@task`` decorators register handlers); one-line errors."""
    if "" not in sys.path:
        sys.path.insert(0, "")  # like `python -m`: modules in the current directory import
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as exc:
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise click.BadParameter(
                f"cannot import {module!r}: {type(exc).__name__}: {first_line}",
                param_hint="--import",
            ) from exc


@click.command("worker")
@click.option(
    "--import",
    "imports",
    multiple=True,
    required=True,
    metavar="MODULE",
    help="Module whose @task handlers to serve (repeatable), e.g. workers.demo.",
)
@click.option(
    "--strategy",
    type=click.Choice([s.value for s in SchedulingStrategy]),
    default=STRATEGY_DEFAULT.value,
    show_default=True,
    help="Which due task to claim first.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=CONCURRENCY_DEFAULT,
    show_default=True,
    help="Tasks run at once in this process.",
)
@click.option(
    "--prefetch",
    type=click.IntRange(min=0),
    default=PREFETCH_DEFAULT,
    show_default=True,
    help="Tasks claimed beyond the free slots, for task types whose handlers are short "
    "(measured); 0 switches it off (long tasks, GPU jobs).",
)
@click.option(
    "--capabilities",
    metavar="JSON",
    default=None,
    help="What this worker offers, matched against tasks' compatibility, "
    'e.g. \'{"region": "us"}\'.',
)
@click.option(
    "--lease-seconds",
    type=click.FloatRange(min=LEASE_SECONDS_MIN),
    default=LEASE_SECONDS_DEFAULT,
    show_default=True,
    help="Lease length; renewed in the background while a handler runs.",
)
@click.option(
    "--poll-interval",
    type=click.FloatRange(min=0, min_open=True),
    default=POLL_INTERVAL_DEFAULT,
    show_default=True,
    help="Seconds between polls when no wake-up arrives.",
)
@click.option(
    "--worker-id", default=None, help="Unique among live workers; default host-pid-random."
)
@click.option("--burst", is_flag=True, help="Exit once no due task this worker can run is left.")
@database_option
@click.option(
    "--shutdown-grace",
    type=click.FloatRange(min=0),
    default=SHUTDOWN_GRACE_SECONDS_DEFAULT,
    show_default=True,
    help="On SIGINT/SIGTERM, seconds running tasks get to finish before they are released.",
)
@click.option(
    "--task-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Time limit per attempt for tasks without their own timeout_seconds.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Serve Prometheus metrics on 127.0.0.1:PORT/metrics.",
)
@click.option(
    "--no-maintenance",
    "no_maintenance",
    is_flag=True,
    help="Do not take part in scheduled maintenance (checkpoint, optimize, purge).",
)
@click.option("--log-format", type=click.Choice(LOG_FORMATS), default="text", show_default=True)
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default="INFO",
    show_default=True,
)
def worker_command(
    imports: tuple[str, ...],
    strategy: str,
    concurrency: int,
    prefetch: int,
    capabilities: str | None,
    lease_seconds: float,
    poll_interval: float,
    worker_id: str | None,
    burst: bool,
    database_url: str | None,
    shutdown_grace: float,
    task_timeout: float | None,
    metrics_port: int | None,
    no_maintenance: bool,
    log_format: str,
    log_level: str,
) -> None:
    """Run a worker: claim due tasks of the imported handlers' types and run them.

    SIGINT/SIGTERM (Ctrl+C, Ctrl+Break on Windows) stop it gracefully; a second signal stops
    it at once. Unfinished tasks are released without using up an attempt.
    """
    offered = parse_json_object(capabilities, "--capabilities")
    database_url = checked_database_url(database_url)
    if worker_id is not None and not worker_id.strip():
        raise click.BadParameter("cannot be empty", param_hint="--worker-id")
    import_handler_modules(imports)
    if not len(default_registry):
        raise click.UsageError(
            f"no task handlers registered by {', '.join(imports)}: decorate them with @task"
        )
    worker_id = worker_id or new_worker_id()
    configure_logging(log_format, log_level, worker_id=worker_id)
    config = WorkerConfig(
        database_url=database_url,
        concurrency=concurrency,
        prefetch=prefetch,
        strategy=strategy,
        capabilities=offered,
        lease_seconds=lease_seconds,
        poll_interval=poll_interval,
        worker_id=worker_id,
        burst=burst,
        shutdown_grace=shutdown_grace,
        task_timeout=task_timeout,
        metrics_port=metrics_port,
        maintenance=not no_maintenance,
    )
    Worker(config, registry=default_registry).run()
