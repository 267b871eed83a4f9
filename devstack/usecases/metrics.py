"""What the services are doing now, read from the stack's Prometheus (`top`, the dashboard):
per service that declares metrics, its request rate, error rate and latency ("http" family)
or its task throughput, failures and queue ("tasks" family)."""

from __future__ import annotations

import json
import math
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from devstack.converge.engine_protocol import Engine
from devstack.declare.capabilities import MetricsStore
from devstack.declare.settings import probe_host
from devstack.declare.spec import Service, Stack
from devstack.errors import ConfigError, MetricsUnavailable
from devstack.usecases import Project

QUERY_TIMEOUT = 2.0


@dataclass(frozen=True)
class Rates:
    """One service's numbers now (None: no data yet). Rates per second, latencies in s."""

    service: str
    family: str
    values: dict[str, float | None] = field(default_factory=dict)


# What each family's numbers are: (name, PromQL with {w} for the rate window), grouped by job
FAMILY_QUERIES: dict[str, tuple[tuple[str, str], ...]] = {
    "http": (
        ("req/s", "sum by (job) (rate(http_requests_total[{w}]))"),
        ("5xx/s", 'sum by (job) (rate(http_requests_total{{status=~"5.."}}[{w}]))'),
        (
            "p50",
            "histogram_quantile(0.5, sum by (job, le) "
            "(rate(http_request_duration_seconds_bucket[{w}])))",
        ),
        (
            "p95",
            "histogram_quantile(0.95, sum by (job, le) "
            "(rate(http_request_duration_seconds_bucket[{w}])))",
        ),
    ),
    "tasks": (
        ("tasks/s", 'sum by (job) (rate(celery_tasks_total{{state="succeeded"}}[{w}]))'),
        ("failed/s", 'sum by (job) (rate(celery_tasks_total{{state="failed"}}[{w}]))'),
        (
            "p95",
            "histogram_quantile(0.95, sum by (job, le) "
            "(rate(celery_task_duration_seconds_bucket[{w}])))",
        ),
        ("queued", "sum by (job) (celery_queue_length)"),
    ),
}


@dataclass(frozen=True)
class Monitor:
    """The stack's Prometheus as this machine reaches it, and the services it watches."""

    url: str
    store: MetricsStore
    services: tuple[Service, ...]

    def query(self, promql: str) -> dict[str, float]:
        """An instant query's value per `job` label; MetricsUnavailable if it fails."""
        address = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        try:
            with urllib.request.urlopen(address, timeout=QUERY_TIMEOUT) as answer:
                body = json.load(answer)
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            message = f"Prometheus at {self.url} does not answer ({reason})"
            raise MetricsUnavailable(message) from None
        found: dict[str, float] = {}
        for item in body.get("data", {}).get("result", []):
            value = float(item["value"][1])
            found[str(item["metric"].get("job", ""))] = value
        return found

    def rates(self) -> list[Rates]:
        """Every watched service's numbers now (all queries at once)."""
        window = self.store.rate_window
        wanted = sorted({q for s in self.services for q in FAMILY_QUERIES[s.metrics_family]})
        with ThreadPoolExecutor(max_workers=4) as pool:
            answers = dict(
                zip(
                    wanted,
                    pool.map(lambda q: self.query(q[1].format(w=window)), wanted),
                    strict=True,
                )
            )
        return [
            Rates(
                s.name,
                s.metrics_family,
                {
                    name: _number(answers[(name, q)].get(s.name))
                    for name, q in FAMILY_QUERIES[s.metrics_family]
                },
            )
            for s in self.services
        ]


def _number(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else value


def monitor(project: Project, engine: Engine) -> Monitor:
    """The stack's Prometheus and the services to watch; ConfigError when the stack has none
    or its group is not running (with the command that brings it up)."""
    stack: Stack = project.whole
    try:
        service, store = stack.metrics_store()
    except LookupError as exc:
        raise ConfigError(str(exc), hint="declare one in stack.py (README: Monitoring)") from None
    if service.name not in project.stack.names:
        observed = engine.snapshot(stack.project)
        if service.name not in observed.containers:
            raise ConfigError(
                f"the {service.group} group is off: {service.name} does not run",
                hint=f"bring it up: `python -m devstack up --with {service.group}`",
            )
    port = service.ports[0]
    watched = tuple(
        s for s in stack.services if s.metrics is not None and s.metrics.family in FAMILY_QUERIES
    )
    return Monitor(f"http://{_url_host(probe_host(port.host_ip))}:{port.host_port}", store, watched)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
