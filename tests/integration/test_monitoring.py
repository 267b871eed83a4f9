"""The monitoring group on the real stack: `up --with monitoring` brings up Prometheus and the
exporters (Grafana's image cannot be pulled here: one line, the rest comes up), every panel of
the project's dashboard returns data after traffic, `top` shows it, the group comes and goes
without touching the other services, and the faults say what is wrong."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import REPO_ROOT, Project, poll
from tests.integration.test_dashboard import Dashboard, browser, open_page

__all__ = ["browser"]  # the module's fixture: a headless chromium

DASHBOARD = REPO_ROOT / "monitoring" / "dashboard.json"
NOW_WANTED = (("api", "req/s"), ("worker", "tasks/s"))  # what the dashboard must chart


def prometheus_query(project: Project, promql: str) -> list[dict[str, object]]:
    port = project.values["DEVSTACK_PROMETHEUS_PORT"]
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as answer:
        result: list[dict[str, object]] = json.load(answer)["data"]["result"]
    return result


@pytest.fixture(scope="module")
def monitored(running: Project) -> Iterator[Project]:
    """The module's stack with the monitoring group turned on, and traffic while it runs."""
    ids = {s: running.container(s).id for s in ("postgres", "redis", "api", "worker")}
    result = running.run("up", "--with", "monitoring", "--quiet")
    running.values["up_output"] = result.stdout
    # adding the group changed none of the other services' containers
    assert {s: running.container(s).id for s in ids} == ids
    stop = threading.Event()

    def traffic() -> None:
        with httpx.Client(base_url=running.api_url, timeout=5) as client:
            while not stop.is_set():
                client.get("/api/v1/live")
                client.get("/no/such/page")
                client.post("/api/v1/tasks", json={"message": "monitored"})
                stop.wait(0.2)

    thread = threading.Thread(target=traffic, daemon=True)
    thread.start()
    yield running
    stop.set()
    thread.join(timeout=10)


def test_up_with_monitoring_is_healthy_and_says_why_grafana_is_missing(
    monitored: Project,
) -> None:
    out = monitored.values["up_output"]
    for service in ("prometheus", "postgres-exporter", "redis-exporter"):
        assert monitored.container(service).status == "running"
    prometheus_url = f"http://127.0.0.1:{monitored.values['DEVSTACK_PROMETHEUS_PORT']}"
    assert f"Prometheus http://127.0.0.1:{monitored.values['DEVSTACK_PROMETHEUS_PORT']}" in out
    grafana = [line for line in out.splitlines() if " grafana " in f" {line} "]
    assert any("healthy" in line for line in grafana) or any(
        "skipped" in line and "cannot be pulled" in line for line in grafana
    ), out
    status = monitored.run("status").stdout
    assert prometheus_url in status


def test_every_service_that_declares_metrics_is_scraped(monitored: Project) -> None:
    declared = {"api", "worker", "worker-reports", "prometheus", "postgres-exporter"}
    declared |= {"redis-exporter"}

    def all_up() -> bool:
        jobs = {r["metric"]["job"]: r["value"][1] for r in prometheus_query(monitored, "up")}  # type: ignore[index]
        return set(jobs) == declared and all(v == "1" for v in jobs.values())

    poll(all_up, timeout=60, interval=0.5)


def test_every_dashboard_panel_returns_data_after_traffic(monitored: Project) -> None:
    queries = [
        target["expr"].replace("$__rate_interval", "10s")
        for panel in json.loads(DASHBOARD.read_text())["panels"]
        for target in panel["targets"]
    ]
    assert len(queries) >= 10
    for query in queries:
        poll(lambda q=query: prometheus_query(monitored, q), timeout=60, interval=0.5)
    # the traffic is there, by route template and task name
    rates = prometheus_query(
        monitored, 'sum by (route) (rate(http_requests_total{job="api"}[10s]))'
    )
    routes = {r["metric"].get("route") for r in rates}  # type: ignore[union-attr]
    assert {"/api/v1/live", "/api/v1/tasks", "<unmatched>"} <= routes


def test_top_shows_requests_and_tasks(monitored: Project) -> None:
    def busy() -> bool:
        out = monitored.run("top", "--once").stdout
        lines = {line.split()[1]: line for line in out.splitlines() if len(line.split()) > 2}
        api, worker = lines.get("api", ""), lines.get("worker", "")
        return (
            "req/s 0.00" not in api
            and "req/s" in api
            and "tasks/s 0.00" not in worker
            and "tasks/s -" not in worker
        )

    poll(busy, timeout=60, interval=1)


def test_the_dashboard_charts_requests_and_tasks_now(monitored: Project, browser: Any) -> None:
    """The dashboard's "Now" panel: the API's request rate and the worker's task rate, live
    from Prometheus, in a real browser."""
    dashboard = Dashboard(monitored)
    try:
        open_page(browser, dashboard)
        value = """return document.querySelector(
            `#now-charts [data-service='${arguments[0]}'] [data-metric='${arguments[1]}']`
        )?.dataset.value;"""

        def busy() -> bool:
            numbers = [browser.execute_script(value, s, m) for s, m in NOW_WANTED]
            return all(n not in (None, "", "0") for n in numbers)

        poll(busy, timeout=60, interval=0.5)
        assert browser.find_elements("css selector", "#now-charts polyline")
    finally:
        assert dashboard.stop() == 130


def test_top_with_prometheus_down_says_so_and_keeps_trying(monitored: Project) -> None:
    container = monitored.container("prometheus")
    container.stop(timeout=5)
    try:
        once = monitored.run("top", "--once", check=False)
        assert once.returncode == 1
        assert "does not answer" in once.stdout and "Traceback" not in once.stderr
        command, env = monitored.command("top", "--quiet")
        process = subprocess.Popen(
            command,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(2)]  # it keeps trying
        assert all("retrying" in line for line in lines), lines
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 130
        assert "Traceback" not in (process.stderr.read() if process.stderr else "")
    finally:
        container.start()


def test_up_without_the_group_removes_only_its_containers(
    running: Project, monitored: Project
) -> None:
    ids = {s: running.container(s).id for s in ("postgres", "redis", "api", "worker")}
    result = running.run("up", "--quiet")
    assert "group 'monitoring' is off" in result.stdout or "removed" in result.stdout
    names = running.resources()["containers"]
    assert not any(
        n.endswith(("-prometheus", "-postgres-exporter", "-redis-exporter")) for n in names
    )
    assert {s: running.container(s).id for s in ids} == ids
    assert any(v.endswith("_prometheus") for v in running.resources()["volumes"])  # data kept


def test_top_when_the_group_is_off(project: Project) -> None:
    result = project.run("top", "--once", check=False)
    assert result.returncode == 2
    assert "monitoring group is off" in result.stderr
    assert "up --with monitoring" in result.stderr


EXPORTER_STACK = """
from dataclasses import replace
from devstack import recipes as r

def stack(env):
    db = r.postgres(env, "db", image=env.image("DEVSTACK_POSTGRES_IMAGE", "postgres:17-alpine"),
                    port_default=5433, password="right-password")
    wrong = replace(db, database=replace(db.database, password="wrong-password"))
    exporter = r.postgres_exporter(env, "db-exporter", wrong, group="",
        image=env.image("DEVSTACK_POSTGRES_EXPORTER_IMAGE", "postgres-exporter"))
    return r.stack(env, db, exporter)
"""


def test_an_exporter_that_cannot_log_in_fails_naming_itself(
    make_project: object, tmp_path: Path
) -> None:
    (tmp_path / "stack.py").write_text(EXPORTER_STACK)
    project = make_project(tmp_path)  # type: ignore[operator]
    kept = ("DEVSTACK_PROJECT", "DEVSTACK_POSTGRES_PORT", "DEVSTACK_POSTGRES_IMAGE")
    kept += ("DEVSTACK_POSTGRES_EXPORTER_IMAGE",)
    project.values = {k: v for k, v in project.values.items() if k in kept}
    project.write_env()
    result = project.run("up", "--quiet", "--timeout", "90", check=False)
    assert result.returncode == 1
    text = result.stdout + result.stderr
    assert "db-exporter" in text and "cannot log in to db" in text, text
    assert "did not become ready" not in text  # it failed at once, not at the deadline
