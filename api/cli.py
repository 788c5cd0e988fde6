"""`prismq-queue api` and `prismq-queue up` (CONTRACT §7), registered through the
``prismq_queue.commands`` entry points so queue_core never imports this package."""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

import click
import uvicorn

from api.app import create_app
from queue_core import migrate
from queue_core.cli.options import EXIT_USAGE, database_option
from queue_core.cli.options import database_url as checked_database_url
from queue_core.database import Database
from queue_core.settings import (
    API_HOST_DEFAULT,
    API_PORT_DEFAULT,
    ENV_PREFIX,
    SHUTDOWN_GRACE_SECONDS_DEFAULT,
    QueueSettings,
)

APP_FACTORY = "api.app:create_app_from_env"
DATABASE_URL_ENV = f"{ENV_PREFIX}DATABASE_URL"
DEMO_MODULE = "workers.demo"
# The worker finishes its running tasks within its own grace period; then it is killed.
WORKER_STOP_TIMEOUT_SECONDS = SHUTDOWN_GRACE_SECONDS_DEFAULT + 5
UVICORN_WORKERS_MAX = 64


class BindRefused(click.UsageError):
    exit_code = EXIT_USAGE


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # any other name may resolve to a public address


def check_bind(host: str, settings: QueueSettings, insecure: bool) -> None:
    """CONTRACT §8: without an API key the API only listens on loopback, unless --insecure."""
    if is_loopback(host) or settings.api_key_list() or insecure:
        return
    raise BindRefused(
        f"refusing to listen on {host} without an API key: set PRISMQ_QUEUE_API_KEYS, "
        "or pass --insecure to serve the queue unauthenticated"
    )


def _warn_without_schema(url: str, settings: QueueSettings) -> None:
    db = Database(url, settings)
    try:
        if migrate.current_revision(db) is None:
            click.echo(
                f"warning: the database at {db.safe_url} has no queue schema yet; "
                "run `prismq-queue db upgrade` (the API answers 503 until then)",
                err=True,
            )
    finally:
        db.dispose()


@click.command("api")
@click.option("--host", default=API_HOST_DEFAULT, show_default=True, help="Address to bind.")
@click.option("--port", type=click.IntRange(0, 65535), default=API_PORT_DEFAULT, show_default=True)
@click.option(
    "--workers",
    "processes",
    type=click.IntRange(1, UVICORN_WORKERS_MAX),
    default=1,
    show_default=True,
    help="Server processes (uvicorn workers).",
)
@click.option(
    "--insecure",
    is_flag=True,
    help="Allow a non-loopback host without PRISMQ_QUEUE_API_KEYS.",
)
@database_option
def api_command(
    host: str, port: int, processes: int, insecure: bool, database_url: str | None
) -> None:
    """Serve the REST API (docs at /docs)."""
    settings = QueueSettings()
    check_bind(host, settings, insecure)
    url = checked_database_url(database_url)
    _warn_without_schema(url, settings)
    # Every server process builds its app from the environment; the ones uvicorn spawns for
    # --workers inherit it.
    os.environ[DATABASE_URL_ENV] = url
    uvicorn.run(APP_FACTORY, factory=True, host=host, port=port, workers=processes)


@click.command("up")
@click.option("--host", default=API_HOST_DEFAULT, show_default=True, help="Address to bind.")
@click.option("--port", type=click.IntRange(0, 65535), default=API_PORT_DEFAULT, show_default=True)
@click.option(
    "--insecure",
    is_flag=True,
    help="Allow a non-loopback host without PRISMQ_QUEUE_API_KEYS.",
)
@database_option
def up_command(host: str, port: int, insecure: bool, database_url: str | None) -> None:
    """Migrate, then run one worker and serve the API: a first run in one command.

    Without --import the worker runs the demo handlers (demo.echo, demo.fail, demo.sleep).
    Ctrl+C stops both."""
    settings = QueueSettings()
    check_bind(host, settings, insecure)
    url = checked_database_url(database_url)
    db = Database(url, settings)
    try:
        migrate.upgrade(db)
        click.echo(f"database ready: {db.safe_url}", err=True)
        worker = _start_worker(url)
        click.echo(f"dashboard: {dashboard_url(host, port)}", err=True)
        watcher = _WorkerWatcher(worker)
        watcher.start()
        try:
            with _terminate_as_interrupt():
                server = uvicorn.Server(
                    uvicorn.Config(create_app(settings, database=db), host=host, port=port)
                )
                server.run()
        except KeyboardInterrupt:
            pass  # Ctrl+C or SIGTERM: the way `up` is meant to end
        finally:
            watcher.stopping.set()
            _stop_worker(worker)
    finally:
        db.dispose()


def dashboard_url(host: str, port: int) -> str:
    """Where a browser on this machine finds the dashboard (CONTRACT §10)."""
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # noqa: S104
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/ui"


def _start_worker(url: str) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "queue_core.cli",
        "worker",
        "--import",
        DEMO_MODULE,
        "--database-url",
        url,
    ]
    # Its own process group on Windows, so that it can be sent CTRL_BREAK on its own.
    flags = 0
    if sys.platform == "win32":
        flags = subprocess.CREATE_NEW_PROCESS_GROUP
    worker = subprocess.Popen(command, creationflags=flags)  # noqa: S603 - our own interpreter
    click.echo(f"worker started (pid {worker.pid})", err=True)
    return worker


def _stop_worker(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is None:
        if sys.platform == "win32":
            worker.send_signal(signal.CTRL_BREAK_EVENT)
        else:
            worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(WORKER_STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            click.echo(f"worker (pid {worker.pid}) did not stop in time; killing it", err=True)
            worker.kill()
            worker.wait()
    click.echo(f"worker stopped (exit code {worker.returncode})", err=True)


class _WorkerWatcher(threading.Thread):
    """Says on stderr when the worker exits while the API is still serving."""

    def __init__(self, worker: subprocess.Popen[bytes]) -> None:
        super().__init__(name="worker-watcher", daemon=True)
        self.worker = worker
        self.stopping = threading.Event()

    def run(self) -> None:
        code = self.worker.wait()
        if not self.stopping.is_set():
            click.echo(
                f"error: the worker (pid {self.worker.pid}) exited with code {code}; "
                "tasks are no longer processed (the API keeps serving)",
                err=True,
            )


@contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """uvicorn re-raises the signal that stopped it once it has shut down; with the default
    SIGTERM handler that would kill this process before it stops the worker. Make SIGTERM
    (and SIGBREAK on Windows) end like Ctrl+C instead."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    names = ["SIGTERM", "SIGBREAK"]
    signals = [getattr(signal, name) for name in names if hasattr(signal, name)]
    previous = {sig: signal.signal(sig, interrupt) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
