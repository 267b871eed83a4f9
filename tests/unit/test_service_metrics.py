"""The service's Prometheus metrics without Docker: the API's /metrics, the worker's task
metrics and queue lengths (their real scrape by Prometheus: tests/integration/test_monitoring)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from service.main import create_app
from service.metrics import QueueLengthCollector
from tests.unit.test_service_app import dead_settings, free_port


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """`name`'s samples in a Prometheus text page, keyed by their sorted labels."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(create_app(dead_settings())) as test_client:
        yield test_client


def test_requests_are_counted_by_route_template_method_and_status(client: TestClient) -> None:
    for _ in range(3):
        assert client.get("/api/v1/live").status_code == 200
    client.get("/api/v1/tasks/00000000-0000-0000-0000-000000000001")  # a path parameter
    client.get("/no/such/page")
    page = client.get("/metrics")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/plain")
    counts = samples(page.text, "http_requests_total")
    live = (("method", "GET"), ("route", "/api/v1/live"), ("status", "200"))
    assert counts[live] == 3
    routes = {dict(k)["route"] for k in counts}
    assert "/api/v1/tasks/{task_id}" in routes  # the template, not the id
    assert "<unmatched>" in routes and "/no/such/page" not in routes
    assert "/metrics" not in routes  # scrapes are not requests of the app
    latency = samples(page.text, "http_request_duration_seconds_count")
    assert latency[live] == 3


def test_the_pool_and_redis_client_are_reported(client: TestClient) -> None:
    page = client.get("/metrics").text
    pool = samples(page, "db_pool_connections")
    assert pool[(("state", "max"),)] == 5  # service.resources.POOL_MAX_SIZE
    assert (("state", "in_use"),) in samples(page, "redis_client_connections")


def test_production_serves_no_metrics_unless_enabled() -> None:
    with TestClient(create_app(dead_settings(environment="production"))) as client:
        assert client.get("/metrics").status_code == 404
    enabled = dead_settings(environment="production", metrics=True)
    with TestClient(create_app(enabled)) as client:
        assert client.get("/metrics").status_code == 200


def test_queue_length_with_the_broker_down_is_no_sample_not_an_error() -> None:
    registry = CollectorRegistry()
    registry.register(QueueLengthCollector(f"redis://127.0.0.1:{free_port()}/1", ("celery",)))
    page = generate_latest(registry).decode()
    assert "# TYPE celery_queue_length gauge" in page
    assert samples(page, "celery_queue_length") == {}


def test_finished_tasks_are_counted_by_state() -> None:
    from service.worker import TASKS, _on_task_finished, _on_task_started

    class Task:
        name = "tests.example"

    def value(state: str) -> float:
        return TASKS.tasks.labels("tests.example", state)._value.get()

    before = {s: value(s) for s in ("succeeded", "failed", "retried")}
    for task_id, state in (("a", "SUCCESS"), ("b", "FAILURE"), ("c", "RETRY"), ("d", "SUCCESS")):
        _on_task_started(task_id=task_id)
        _on_task_finished(task_id=task_id, task=Task(), state=state)
    assert value("succeeded") - before["succeeded"] == 2
    assert value("failed") - before["failed"] == 1
    assert value("retried") - before["retried"] == 1
    duration = TASKS.duration.labels("tests.example")._sum.get()
    assert duration > 0
