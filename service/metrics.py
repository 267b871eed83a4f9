"""Prometheus metrics (``prometheus-client``, the reference client the other tools build on).

API: ``MetricsMiddleware`` counts requests and times them by route template, method and
status (a pure ASGI middleware on the app's own registry: no global state, cheap per request),
and ``ClientsCollector`` reports the asyncpg pool and the Redis client at scrape time.
``/metrics`` serves both (not in production unless ``AI_AGENTS_METRICS=true``).

Worker: Celery's signals count tasks by name and state and time them. Under the prefork pool
every process writes its own files in ``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's
multiprocess mode) and the main process serves their sum, plus the queues' lengths read from
the broker at scrape time, on ``AI_AGENTS_METRICS_PORT``.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

METRICS_PATH = "/metrics"
UNMATCHED = "<unmatched>"  # a path no route matched: one label value, not one per URL
# request latency buckets (seconds): a local API answers in milliseconds
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
TASK_STATES = {"SUCCESS": "succeeded", "FAILURE": "failed", "RETRY": "retried"}
TASK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class HttpMetrics:
    """The API's request metrics, on a registry of its own."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ("method", "route", "status")
        self.requests = Counter(
            "http_requests_total", "HTTP requests answered.", labels, registry=registry
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "Time to answer an HTTP request.",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )


class MetricsMiddleware:
    """Counts and times every HTTP request but the scrapes of ``/metrics``."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == METRICS_PATH:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # unless a response starts: an exception is answered with a 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or UNMATCHED
            labels = (scope["method"], route, str(status))
            self.metrics.requests.labels(*labels).inc()
            self.metrics.latency.labels(*labels).observe(time.perf_counter() - started)


class ClientsCollector(Collector):
    """The asyncpg pool's and the Redis client's connections, read when scraped. ``clients``
    is set by the app's lifespan (None before it starts and after it stops)."""

    def __init__(self) -> None:
        self.clients: Any = None  # service.resources.Resources

    def collect(self) -> Iterator[Metric]:
        pool = getattr(self.clients, "pool", None)
        postgres = GaugeMetricFamily(
            "db_pool_connections", "asyncpg pool connections by state.", labels=["state"]
        )
        if pool is not None:
            size, idle = pool.get_size(), pool.get_idle_size()
            postgres.add_metric(["in_use"], size - idle)
            postgres.add_metric(["idle"], idle)
            postgres.add_metric(["max"], pool.get_max_size())
        yield postgres
        redis_pool = getattr(getattr(self.clients, "redis", None), "connection_pool", None)
        redis = GaugeMetricFamily(
            "redis_client_connections", "Redis client connections by state.", labels=["state"]
        )
        if redis_pool is not None:
            redis.add_metric(["in_use"], len(getattr(redis_pool, "_in_use_connections", ())))
            redis.add_metric(["idle"], len(getattr(redis_pool, "_available_connections", ())))
            redis.add_metric(["max"], getattr(redis_pool, "max_connections", 0))
        yield redis


# --- the worker ------------------------------------------------------------------------------
class TaskMetrics:
    """Task counts by name and state and their durations (multiprocess-safe when
    ``PROMETHEUS_MULTIPROC_DIR`` is set before prometheus-client is imported)."""

    def __init__(self) -> None:  # on the default registry: what multiprocess mode reads
        self.tasks = Counter(
            "celery_tasks_total",
            "Tasks finished, by task name and state (succeeded, failed, retried).",
            ("task", "state"),
        )
        self.duration = Histogram(
            "celery_task_duration_seconds",
            "Time a task ran, by task name.",
            ("task",),
            buckets=TASK_BUCKETS,
        )
        self._started: dict[str, float] = {}

    def started(self, task_id: str) -> None:
        self._started[task_id] = time.perf_counter()

    def finished(self, task_id: str, task: str) -> None:
        began = self._started.pop(task_id, None)
        if began is not None:
            self.duration.labels(task).observe(time.perf_counter() - began)

    def count(self, task: str, state: str) -> None:
        """Count a finished run: Celery's SUCCESS, FAILURE or RETRY (others are ignored)."""
        named = TASK_STATES.get(state)
        if named is not None:
            self.tasks.labels(task, named).inc()


class QueueLengthCollector(Collector):
    """How many messages wait in each queue, read from the Redis broker when scraped."""

    def __init__(self, broker_url: str, queues: tuple[str, ...]) -> None:
        self.broker_url = broker_url
        self.queues = queues

    def collect(self) -> Iterator[Metric]:
        from redis import Redis

        family = GaugeMetricFamily(
            "celery_queue_length", "Messages waiting in a queue.", labels=["queue"]
        )
        client = Redis.from_url(self.broker_url, socket_timeout=1, socket_connect_timeout=1)
        try:
            for queue in self.queues:
                family.add_metric([queue], float(client.llen(queue)))
        except OSError:
            pass  # the broker is down: no sample rather than a failed scrape
        except Exception as exc:  # redis' own errors (ConnectionError is not an OSError)
            if type(exc).__module__.split(".")[0] != "redis":
                raise
        finally:
            client.close()
        yield family


def multiprocess_dir() -> Path | None:
    """Where the worker's processes write their metrics (None: single-process mode)."""
    value = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return Path(value) if value else None


def reset_multiprocess_dir(directory: Path) -> None:
    """An empty directory: the files of an earlier run (its pids) would be summed too."""
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()


def worker_registry(broker_url: str, queues: tuple[str, ...]) -> CollectorRegistry:
    """What the worker's main process serves: every process' task metrics and the queues."""
    registry = CollectorRegistry()
    if multiprocess_dir() is not None:
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(_DefaultTasks())
    registry.register(QueueLengthCollector(broker_url, queues))
    return registry


class _DefaultTasks(Collector):
    """Single-process mode (a solo or threads pool): the default registry's task metrics."""

    def collect(self) -> Iterator[Metric]:
        from prometheus_client import REGISTRY

        yield from REGISTRY.collect()
