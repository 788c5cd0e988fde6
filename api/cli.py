"""`prismq-queue api` and `prismq-queue up` (CONTRACT §7), registered through the
``prismq_queue.commands`` entry points so queue_core never imports this package."""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import subprocess
import sys
import threading
import time
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
from queue_core.errors import QueueError
from queue_core.repositories import TaskRepository
from queue_core.schemas import QueueStats
from queue_core.settings import (
    API_HOST_DEFAULT,
    API_PORT_DEFAULT,
    ENV_PREFIX,
    SHUTDOWN_GRACE_SECONDS_DEFAULT,
    UP_PROGRESS_INTERVAL_SECONDS,
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


class WorkerDidNotStart(click.ClickException):
    """The worker refused its command line (a bad --import): bad usage, as for the worker."""

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
@click.option(
    "--import",
    "imports",
    multiple=True,
    metavar="MODULE",
    help=f"Module whose @task handlers the worker serves (repeatable); default {DEMO_MODULE}.",
)
@click.option("--host", default=API_HOST_DEFAULT, show_default=True, help="Address to bind.")
@click.option("--port", type=click.IntRange(0, 65535), default=API_PORT_DEFAULT, show_default=True)
@click.option(
    "--insecure",
    is_flag=True,
    help="Allow a non-loopback host without PRISMQ_QUEUE_API_KEYS.",
)
@database_option
def up_command(
    imports: tuple[str, ...], host: str, port: int, insecure: bool, database_url: str | None
) -> None:
    """Migrate, then run one worker and serve the API: a first run in one command.

    Without --import the worker runs the demo handlers (demo.echo, demo.fail, demo.sleep).
    Ctrl+C stops both: running tasks get the worker's grace period; a second Ctrl+C stops
    them at once."""
    settings = QueueSettings()
    check_bind(host, settings, insecure)
    url = checked_database_url(database_url)
    listener = bind_listener(host, port)  # a busy port fails here, before anything changes
    try:
        db = Database(url, settings)
        try:
            migrate.upgrade(db)
            click.echo(f"database ready: {db.safe_url}", err=True)
            _serve_with_worker(db, settings, url, imports or (DEMO_MODULE,), listener)
        finally:
            db.dispose()
    finally:
        listener.close()


def bind_listener(host: str, port: int) -> socket.socket:
    """The server's listening socket, bound now: a port in use is one line and exit 1."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        if sys.platform != "win32":  # as uvicorn does; on Windows it would allow port sharing
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host.strip("[]"), port))
    except (OSError, OverflowError) as exc:
        listener.close()
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise click.ClickException(f"cannot listen on {host}:{port}: {reason}") from None
    listener.set_inheritable(True)
    return listener


def _serve_with_worker(
    db: Database,
    settings: QueueSettings,
    url: str,
    imports: tuple[str, ...],
    listener: socket.socket,
) -> None:
    server = uvicorn.Server(uvicorn.Config(create_app(settings, database=db)))
    worker = _start_worker(url, imports)
    watcher = _WorkerWatcher(worker, server)
    watcher.start()
    progress = ProgressReporter(db)
    progress.start()
    click.echo(f"serving the API on {_address_of(listener)} (docs at /docs)", err=True)
    click.echo(f"dashboard: {dashboard_url(*listener.getsockname()[:2])}", err=True)
    with _terminate_as_interrupt():  # also while the worker stops: a second signal hurries it
        try:
            server.run(sockets=[listener])
        except KeyboardInterrupt:
            pass  # Ctrl+C or SIGTERM: the way `up` is meant to end
        finally:
            progress.stop()
            watcher.stopping.set()
            _stop_worker(worker)
    if watcher.failed_code is not None:
        raise WorkerDidNotStart("the worker could not start (its error is above)")


def dashboard_url(host: str, port: int) -> str:
    """Where a browser on this machine finds the dashboard (CONTRACT §10)."""
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # noqa: S104
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/ui"


def _address_of(listener: socket.socket) -> str:
    host, port = listener.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


# `python -m` and `python -c` put the current directory first on sys.path, where a project's
# own `workers/` or `api/` package would shadow the installed ones: the worker starts with it
# removed. Handler modules passed to --import still load from the current directory
# (workers.cli adds it once the queue's own packages are imported).
WORKER_BOOTSTRAP = (
    "import sys\n"
    "if sys.path and sys.path[0] == '':\n"
    "    del sys.path[0]\n"
    "from queue_core.cli import main\n"
    "main()\n"
)


def worker_command_line(url: str, imports: tuple[str, ...]) -> list[str]:
    modules = [arg for module in imports for arg in ("--import", module)]
    return [sys.executable, "-c", WORKER_BOOTSTRAP, "worker", *modules, "--database-url", url]


def _start_worker(url: str, imports: tuple[str, ...]) -> subprocess.Popen[bytes]:
    # A process group of its own, so that Ctrl+C in the terminal reaches `up` alone, and `up`
    # asks the worker to stop once (a second signal would release running tasks at once).
    # On Windows that also lets it be sent CTRL_BREAK on its own.
    if sys.platform == "win32":
        worker = subprocess.Popen(  # noqa: S603 - our own interpreter
            worker_command_line(url, imports), creationflags=subprocess.CREATE_NEW_PROCESS_GROUP
        )
    else:
        worker = subprocess.Popen(  # noqa: S603 - our own interpreter
            worker_command_line(url, imports), start_new_session=True
        )
    click.echo(f"worker started (pid {worker.pid}): {', '.join(imports)}", err=True)
    return worker


def _signal_stop(worker: subprocess.Popen[bytes]) -> None:
    if sys.platform == "win32":
        worker.send_signal(signal.CTRL_BREAK_EVENT)
    else:
        worker.send_signal(signal.SIGTERM)


def _stop_worker(worker: subprocess.Popen[bytes]) -> None:
    """Ask once (the worker finishes its tasks within its grace period); a Ctrl+C meanwhile
    asks again, which makes it release them at once; past the timeout it is killed."""
    if worker.poll() is None:
        _signal_stop(worker)
        deadline = time.monotonic() + WORKER_STOP_TIMEOUT_SECONDS
        while worker.poll() is None:
            try:
                worker.wait(max(deadline - time.monotonic(), 0))
            except KeyboardInterrupt:
                click.echo("stopping the worker at once", err=True)
                _signal_stop(worker)
            except subprocess.TimeoutExpired:
                click.echo(f"worker (pid {worker.pid}) did not stop in time; killing it", err=True)
                worker.kill()
                worker.wait()
    # The worker logs `worker stopped` itself; only an unusual end is worth a line here.
    if worker.returncode not in (0, EXIT_USAGE):
        click.echo(f"the worker (pid {worker.pid}) exited with code {worker.returncode}", err=True)


class _WorkerWatcher(threading.Thread):
    """Says on stderr when the worker exits while the API is still serving. A worker that
    refused its command line (a bad --import: exit 2) stops `up` with that code."""

    def __init__(self, worker: subprocess.Popen[bytes], server: uvicorn.Server) -> None:
        super().__init__(name="worker-watcher", daemon=True)
        self.worker = worker
        self.server = server
        self.stopping = threading.Event()
        self.failed_code: int | None = None

    def run(self) -> None:
        code = self.worker.wait()
        if self.stopping.is_set():
            return
        if code == EXIT_USAGE:  # it printed why; `up` stops and exits with its code
            self.failed_code = code
            self.server.should_exit = True
            return
        click.echo(
            f"error: the worker (pid {self.worker.pid}) exited with code {code}; "
            "tasks are no longer processed (the API keeps serving)",
            err=True,
        )


class ProgressReporter(threading.Thread):
    """A line on stderr every UP_PROGRESS_INTERVAL_SECONDS while tasks move, e.g.
    ``progress: 12 completed, 1 failed in the last 10 s; 3 queued, 1 running``."""

    def __init__(self, db: Database, interval: float = UP_PROGRESS_INTERVAL_SECONDS) -> None:
        super().__init__(name="up-progress", daemon=True)
        self.tasks = TaskRepository(db)
        self.interval = interval
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        previous = self._snapshot()
        while not self._stop.wait(self.interval):
            current = self._snapshot()
            if current is None or previous is None:
                previous = current
                continue
            line = progress_line(previous, current, self.interval)
            if line:
                click.echo(line, err=True)
            previous = current

    def _snapshot(self) -> QueueStats | None:
        try:
            return self.tasks.stats()
        except QueueError:
            return None  # no schema yet or busy: the next round says it


def progress_line(before: QueueStats, after: QueueStats, interval: float) -> str | None:
    """What changed between two stats, for a person; None when nothing did."""
    moved = {
        "completed": max(after.completed_tasks - before.completed_tasks, 0),
        "failed": max(after.failed_tasks - before.failed_tasks, 0),
        "cancelled": max(after.cancelled_tasks - before.cancelled_tasks, 0),
    }
    now = (after.queued_tasks, after.leased_tasks)
    if not any(moved.values()) and now == (before.queued_tasks, before.leased_tasks):
        return None
    done = ", ".join(f"{n} {what}" for what, n in moved.items() if n) or "nothing finished"
    return (
        f"progress: {done} in the last {interval:g} s; "
        f"{after.queued_tasks} queued, {after.leased_tasks} running"
    )


@contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """uvicorn re-raises the signal that stopped it once it has shut down; with the default
    SIGTERM handler that would kill this process before it stops the worker. Make SIGTERM,
    SIGHUP (the terminal closed) and SIGBREAK on Windows end like Ctrl+C instead."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    names = ["SIGTERM", "SIGHUP", "SIGBREAK"]
    signals = [getattr(signal, name) for name in names if hasattr(signal, name)]
    previous = {sig: signal.signal(sig, interrupt) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
