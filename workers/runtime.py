"""The worker: the small piece that puts the parts together and stays alive.

The parts, each in its own module:

- the **fetcher** (``workers.fetcher``) claims up to (free slots + prefetch) tasks per round,
  prefetching only task types whose handlers are short;
- the **executor** (``workers.executor``) runs handlers in ``--concurrency`` slot threads; a
  slot that finds nothing queued fetches the next round itself, so at ``--concurrency 1`` a
  sync handler runs on the thread that claimed it;
- the **completer** (``workers.completer``) owns finished outcomes and writes them with the
  next claim, or on its own after ``FLUSH_INTERVAL_SECONDS``, or at shutdown;
- the **lease keeper** (``workers.keeper``) renews leases and heartbeats on its own thread;
- **housekeeping** (``workers.housekeeping``) sweeps expired leases and runs maintenance.

The thread that calls :meth:`Worker.run` supervises: it handles stop signals and the
shutdown grace, time limits, the completer's flush timer and housekeeping. A database that is
unavailable is retried with back-off (``workers.health``); finished outcomes wait in memory
meanwhile and their leases keep being renewed.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Sequence
from contextlib import nullcontext

from queue_core.claims import Lease
from queue_core.clock import Clock, utcnow
from queue_core.database import Database
from queue_core.errors import DatabaseUnavailable
from queue_core.repositories import (
    LeaseRepository,
    RenewResult,
    ScheduleRepository,
    TaskLogRepository,
    WorkerRepository,
    default_worker_id,
)
from workers.attempt import AttemptTable
from workers.clocksync import ClockSync
from workers.completer import Completer
from workers.config import WorkerConfig
from workers.defaults import FINAL_RECORD_SECONDS, IMMEDIATE_RECORD_SECONDS, WORKER_LOGGER
from workers.executor import Executor
from workers.fetcher import Fetcher
from workers.health import DatabaseHealth
from workers.housekeeping import Housekeeping
from workers.keeper import LeaseKeeper
from workers.metrics import WorkerMetrics
from workers.registry import Registry, default_registry
from workers.signals import handling_stop_signals
from workers.supervisor import Supervisor
from workers.tasklog import ContextAdapter
from workers.wakeup import WorkSignal

__all__ = ["Worker", "WorkerConfig", "new_worker_id"]  # WorkerConfig is also importable here


def new_worker_id() -> str:
    """host-pid plus a short random part: unique even for several workers in one process."""
    return f"{default_worker_id()}-{secrets.token_hex(3)}"


def declare_schedules(db: Database, clock: Clock, registry: Registry) -> None:
    """Create or update the schedule of every ``@task(..., cron=...)`` this worker serves
    (CONTRACT §9); the elected maintenance runner enqueues their due tasks."""
    periodic = registry.periodic()
    if not periodic:
        return
    schedules = ScheduleRepository(db, clock)
    for handler in periodic:
        spec = handler.periodic
        assert spec is not None
        schedules.declare(
            handler.name,
            handler.name,
            spec.cron,
            timezone=spec.timezone,
            payload=spec.payload,
            priority=spec.priority,
            catch_up=spec.catch_up,
        )


class Worker:
    """A worker: ``run()`` blocks (a CLI process), ``start()``/``stop()`` run it in a thread.

    Several Workers can share one process and one :class:`Database`; each has its own
    worker id, slots and metrics registry.
    """

    def __init__(
        self,
        config: WorkerConfig | None = None,
        *,
        registry: Registry | None = None,
        db: Database | None = None,
        clock: Clock = utcnow,
    ) -> None:
        self.config = config or WorkerConfig()
        self.registry = registry if registry is not None else default_registry
        self.worker_id = self.config.worker_id or new_worker_id()
        self.metrics = WorkerMetrics(self.worker_id)
        self.log = ContextAdapter(logging.getLogger(WORKER_LOGGER), {"worker_id": self.worker_id})
        self.health = DatabaseHealth(self.metrics, self.log)
        self.types: list[str] = []
        self._given_db = db
        self._clock = clock
        self.supervisor = Supervisor(self.config, self.log)
        self._ready = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._executor: Executor | None = None
        self._work: WorkSignal | None = None
        self._keeper: LeaseKeeper | None = None

    # --- public control ---

    def run(self, *, install_signal_handlers: bool = True) -> None:
        """Run until stopped (a signal, :meth:`stop`, or ``burst`` running out of work).

        Installs SIGINT/SIGTERM (and SIGBREAK) handlers when called from the main thread and
        ``install_signal_handlers`` is true: the first signal stops gracefully, the second at
        once.
        """
        signals = (
            handling_stop_signals(self.supervisor.on_signal)
            if install_signal_handlers
            else nullcontext()
        )
        try:
            with signals:
                self._run()
        finally:
            self._done.set()

    def start(self, *, wait: bool = True, timeout: float | None = None) -> None:
        """Run in a background daemon thread, without signal handlers (embedding).

        With ``wait``, returns once the worker has registered and claims (or raises what
        stopped it from starting); the database being unavailable keeps it retrying, so give
        a ``timeout`` when that must not block.
        """
        if self._thread is not None:
            raise RuntimeError("this worker was started already")
        self._thread = threading.Thread(
            target=self._run_in_thread, name=f"prismq-worker-{self.worker_id}", daemon=True
        )
        self._thread.start()
        if wait:
            self._ready.wait(timeout)
            if self._error is not None:
                raise self._error

    def _run_in_thread(self) -> None:
        try:
            self.run(install_signal_handlers=False)
        except BaseException as exc:
            self._error = exc
            self.log.exception("the worker stopped on an error")
        finally:
            self._ready.set()

    def request_stop(self, *, grace: float | None = None, immediate: bool = False) -> None:
        """Ask the worker to stop; returns at once. Safe from any thread and signal handlers."""
        self.supervisor.request_stop(grace=grace, immediate=immediate)
        if self._work is not None:
            self._work.wake()

    def stop(self, grace: float | None = None, *, timeout: float | None = None) -> None:
        """Stop gracefully: stop claiming, wait up to ``grace`` seconds (default: the
        configured shutdown grace) for running tasks, release the rest, and return once the
        worker has exited (or ``timeout`` passed). Re-raises an error the worker died of."""
        self.request_stop(grace=grace)
        self.join(timeout)

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the worker to exit; True when it has."""
        if self._thread is not None:
            self._thread.join(timeout)
            finished = not self._thread.is_alive()
        else:
            finished = self._done.wait(timeout)
        if self._error is not None:
            raise self._error
        return finished

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until the worker has registered and started claiming."""
        return self._ready.wait(timeout)

    def wake(self) -> None:
        """Claim now (e.g. right after an enqueue in this process). Not for signal handlers."""
        self.supervisor.notify()
        if self._work is not None:
            self._work.wake()

    @property
    def running(self) -> int:
        """Handlers running now."""
        return self.executor.busy if self._executor is not None else 0

    @property
    def is_stopping(self) -> bool:
        return self.supervisor.stop_requested

    # --- life cycle ---

    def _run(self) -> None:
        types = self.registry.names()
        if not types:
            raise ValueError("no task handlers are registered: import a module that has @task")
        self.types = types
        owns_db = self._given_db is None
        self.db = self._given_db or Database(self.config.database_url)
        self.clock_sync = ClockSync(self.db, self._clock, self.log)
        self._clock = self.clock_sync.clock
        self.workers = WorkerRepository(self.db, self._clock)
        self._build_parts()
        registered = False
        try:
            if self.config.metrics_port is not None:
                self.metrics.serve(self.config.metrics_port, self.config.metrics_host)
            registered = self._register()
            if registered:
                self._start_parts()
                self._ready.set()
                try:
                    self.supervisor.run(
                        self.executor, self.completer, self.housekeeping, self.health
                    )
                except BaseException:
                    self.log.exception("the run loop failed; giving back running tasks")
                    self.executor.drain()
                    self.executor.give_back_running()
                    self.completer.flush_until(time.monotonic() + FINAL_RECORD_SECONDS)
                    raise
        finally:
            self._close(registered, owns_db)

    def _build_parts(self) -> None:
        config = self.config
        self.leases = LeaseRepository(self.db, self._clock)
        self.table = AttemptTable()
        self.completer = Completer(
            leases=self.leases,
            task_log_repo=TaskLogRepository(self.db, self._clock),
            table=self.table,
            health=self.health,
            metrics=self.metrics,
            worker_id=self.worker_id,
            clock=self._clock,
            log=self.log,
            notify=self.supervisor.notify,
        )
        self.fetcher = Fetcher(
            config=config,
            worker_id=self.worker_id,
            types=self.types,
            registry=self.registry,
            completer=self.completer,
            leases=self.leases,
            metrics=self.metrics,
            clock=self._clock,
            log=self.log,
        )
        self._work = WorkSignal(self.db, config.poll_interval)
        self._executor = self.executor = Executor(
            concurrency=config.concurrency,
            table=self.table,
            fetcher=self.fetcher,
            completer=self.completer,
            health=self.health,
            work=self._work,
            metrics=self.metrics,
            result_limit_bytes=self.db.settings.payload_max_bytes,
            poll_interval=config.poll_interval,
            burst=config.burst,
            notify=self.supervisor.notify,
        )
        self.housekeeping = Housekeeping(
            db=self.db,
            clock=self._clock,
            worker_id=self.worker_id,
            sweep_interval=config.effective_sweep_interval,
            maintenance=config.maintenance,
            health=self.health,
            log=self.log,
        )

    def _register(self) -> bool:
        config = self.config
        while not self.supervisor.stop_requested:
            try:
                self.clock_sync.sync()
                self.workers.register(
                    self.worker_id,
                    capabilities=config.capabilities,
                    task_types=self.types,
                    concurrency=config.concurrency,
                    strategy=str(config.strategy),
                )
                # A previous process with this id died without releasing: recover its tasks.
                report = self.leases.release_worker_tasks(self.worker_id, "worker restarted")
                declare_schedules(self.db, self._clock, self.registry)
            except DatabaseUnavailable as exc:  # anything else at start-up is fatal
                self.health.failed("register", exc)
                self.supervisor.wait(self.health.remaining())
                continue
            self.health.ok()
            if report.total:
                self.log.warning("recovered %d task(s) held by this worker id before", report.total)
            self.log.info(
                "worker started: types %s, concurrency %d, prefetch %d, strategy %s, "
                "lease %g s, on %s",
                ",".join(self.types),
                config.concurrency,
                config.prefetch,
                config.strategy,
                config.lease_seconds,
                self.db.safe_url,
            )
            return True
        return False

    def _start_parts(self) -> None:
        self._keeper = LeaseKeeper(
            leases=self.leases,
            worker_id=self.worker_id,
            lease_seconds=self.config.lease_seconds,
            held=self.table.held_leases,
            on_renewed=self._on_renewed,
            after_tick=self._after_keeper_tick,
            on_unavailable=self._keeper_unavailable,
            logger=self.log,
        )
        self._keeper.start()
        assert self._work is not None
        self._work.start()
        # Sweep once before the first claim: expired leases are work to do (and --burst
        # must not stop while a dead worker's task waits to be recovered).
        self.housekeeping.run_due()
        self.executor.start()

    def _close(self, registered: bool, owns_db: bool) -> None:
        if self._executor is not None:
            self._executor.close()
        if self._work is not None:
            self._work.close()
        if self._keeper is not None:
            self._keeper.stop()
        if registered:
            self.completer.flush_task_logs_quietly()
            deadline = time.monotonic() + IMMEDIATE_RECORD_SECONDS
            while True:
                try:
                    self.workers.stop(self.worker_id)
                    break
                except Exception as exc:  # noqa: BLE001
                    if time.monotonic() >= deadline:
                        self.log.warning("could not mark the worker stopped: %s", exc)
                        break
                    time.sleep(0.1)
        self.metrics.close()
        if owns_db:
            self.db.dispose()
        left = len(self.table) if registered else 0
        if left:
            self.log.error(
                "exiting with %d task(s) still leased; their leases expire and they run again",
                left,
            )
        self.log.info("worker stopped")

    # --- the lease keeper's reports ---

    def _after_keeper_tick(self) -> None:
        self.completer.flush_task_logs_quietly()
        self.clock_sync.sync_if_due()

    def _on_renewed(self, leases: Sequence[Lease], renewed: dict[int, RenewResult]) -> None:
        for attempt in self.table.apply_renewal(leases, renewed):
            self.executor.interrupt(attempt)

    def _keeper_unavailable(self, operation: str, error: Exception, delay: float) -> None:
        self.metrics.db_unavailable.labels(operation).inc()
