"""Prometheus metrics: the queue's depth read from the database at scrape time, and the HTTP
requests this process served. Each app has its own CollectorRegistry, so several apps in one
process (tests) never share or collide."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from queue_core.errors import QueueError
from queue_core.repositories import TaskRepository
from queue_core.states import TaskStatus

logger = logging.getLogger("api.metrics")

UNMATCHED_ROUTE = "unmatched"
# Seconds; finer than the default buckets at the low end, where an API on SQLite lives.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class QueueCollector(Collector):
    """Queue depth by status and type, oldest queued age and active workers, from the database."""

    def __init__(self, tasks: TaskRepository) -> None:
        self.tasks = tasks

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily(
            "prismq_queue_database_up", "1 when the database answered this scrape, else 0."
        )
        try:
            stats = self.tasks.stats()
        except (QueueError, SQLAlchemyError) as exc:
            logger.warning("metrics: queue statistics unavailable: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        depth = GaugeMetricFamily(
            "prismq_queue_tasks", "Tasks by status and type.", labels=["status", "type"]
        )
        for task_type, counts in sorted(stats.by_type.items()):
            for status in TaskStatus:
                depth.add_metric([status.value, task_type], counts.get(status.value, 0))
        yield depth
        oldest = GaugeMetricFamily(
            "prismq_queue_oldest_queued_age_seconds",
            "Seconds since the oldest due queued task became due (0 when none is due).",
        )
        oldest.add_metric([], stats.oldest_queued_age_seconds or 0.0)
        yield oldest
        workers = GaugeMetricFamily(
            "prismq_queue_workers_active", "Workers with a recent heartbeat."
        )
        workers.add_metric([], stats.workers_active)
        yield workers


class RequestMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "prismq_http_requests",
            "HTTP requests served, by method, route template and status.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "prismq_http_request_duration_seconds",
            "Time to serve an HTTP request, by method, route template and status.",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        code = str(status)
        self.requests.labels(method, route, code).inc()
        self.latency.labels(method, route, code).observe(seconds)


def new_registry(tasks: TaskRepository) -> tuple[CollectorRegistry, RequestMetrics]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(QueueCollector(tasks))
    return registry, RequestMetrics(registry)


def route_template(routes: Sequence[BaseRoute], scope: Scope) -> str:
    """The path template (`/api/queue/tasks/{task_id}`), never the raw path: the label set stays
    bounded whatever clients send."""
    for route in routes:
        # path_format drops the convertors: `{task_id:int}` is labelled `{task_id}`.
        path = getattr(route, "path_format", None) or getattr(route, "path", None)
        if isinstance(path, str) and route.matches(scope)[0] != Match.NONE:
            return path
    return UNMATCHED_ROUTE


class RequestMetricsMiddleware:
    """Counts and times every request, including those refused before routing (401, 413)."""

    def __init__(self, app: ASGIApp, metrics: RequestMetrics, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            route = route_template(self.routes, scope)
            self.metrics.observe(scope["method"], route, status, time.perf_counter() - started)
