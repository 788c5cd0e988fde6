"""Prometheus metrics of one worker, in a CollectorRegistry of its own.

A registry per Worker keeps two workers embedded in one process (or a worker and the API)
from colliding on metric names; ``--metrics-port`` serves this registry alone.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from workers.defaults import METRICS_HOST_DEFAULT, WORKER_LOGGER

log = logging.getLogger(WORKER_LOGGER)

RUN_SECONDS_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800, 3600)
CLAIM_SECONDS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5)


class WorkerMetrics:
    def __init__(self, worker_id: str, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry

        def by_type(name: str, doc: str) -> Counter:
            return Counter(f"prismq_worker_tasks_{name}", doc, ["type"], registry=r)

        self.claimed = by_type("claimed", "Tasks this worker leased.")
        self.completed = by_type("completed", "Tasks whose handler returned and were recorded.")
        self.failed = by_type("failed", "Tasks that ended failed (dead letter) here.")
        self.retried = by_type("retried", "Failed attempts put back to queued for a retry.")
        self.cancelled = by_type("cancelled", "Running tasks that ended cancelled.")
        self.lease_lost = by_type("lease_lost", "Results discarded because the lease was lost.")
        self.timed_out = by_type("timed_out", "Attempts that overran their time limit.")
        self.released = by_type("released", "Tasks given back unfinished at shutdown.")
        self.db_unavailable = Counter(
            "prismq_worker_db_unavailable_retries",
            "Database calls retried because the database was busy (SQLITE_BUSY beyond "
            "busy_timeout) or unreachable.",
            ["operation"],
            registry=r,
        )
        self.run_seconds = Histogram(
            "prismq_worker_task_run_seconds",
            "Handler run time.",
            ["type"],
            buckets=RUN_SECONDS_BUCKETS,
            registry=r,
        )
        self.claim_seconds = Histogram(
            "prismq_worker_claim_seconds",
            "Time one claim statement (and its transaction) took.",
            buckets=CLAIM_SECONDS_BUCKETS,
            registry=r,
        )
        self.running = Gauge("prismq_worker_tasks_running", "Handlers running now.", registry=r)
        info = Gauge(
            "prismq_worker_info",
            "Constant 1, labelled with the worker id.",
            ["worker_id"],
            registry=r,
        )
        info.labels(worker_id=worker_id).set(1)
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.address: tuple[str, int] | None = None

    def serve(self, port: int, host: str = METRICS_HOST_DEFAULT) -> tuple[str, int]:
        """Serve ``/metrics`` for this registry on host:port (port 0: any free port)."""
        started: Any = start_http_server(port, addr=host, registry=self.registry)
        if isinstance(started, tuple):
            self._server, self._thread = started
            address = self._server.server_address
            self.address = (str(address[0]), int(address[1]))
        else:  # pragma: no cover - prometheus_client before 0.20 returned nothing
            self.address = (host, port)
        log.info("metrics on http://%s:%d/metrics", self.address[0], self.address[1])
        return self.address

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
