"""The seed's checks, through devstack, on one stack brought up once (real engine)."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor

import asyncpg
import httpx
import redis

from .conftest import Project, poll


def test_postgres_reachable_with_configured_credentials(running: Project) -> None:
    async def check() -> tuple[str, str]:
        conn = await asyncpg.connect(running.dsn, timeout=5)
        try:
            row = await conn.fetchrow("SELECT current_database() AS db, current_user AS who")
            return row["db"], row["who"]
        finally:
            await conn.close()

    assert asyncio.run(check()) == ("testdb", "tester")


def test_redis_reachable_with_aof_and_separate_dbs(running: Project) -> None:
    cache = redis.Redis(port=running.redis_port, db=0)
    broker = redis.Redis(port=running.redis_port, db=1)
    assert cache.config_get("appendonly") == {"appendonly": "yes"}
    cache.set("only-in-cache", "1")
    assert cache.get("only-in-cache") == b"1"
    assert broker.get("only-in-cache") is None


def test_health_and_readiness(running: Project) -> None:
    health = httpx.get(f"{running.api_url}/health", timeout=5)
    assert health.status_code == 200
    body = health.json()
    assert body["status"] == "ok"
    assert body["checks"]["postgres"]["status"] == "ok"
    assert body["checks"]["redis"]["status"] == "ok"
    assert httpx.get(f"{running.api_url}/api/v1/ready", timeout=5).status_code == 200
    assert httpx.get(f"{running.api_url}/api/v1/live", timeout=5).json() == {"status": "alive"}


def test_docs_and_index(running: Project) -> None:
    docs = httpx.get(f"{running.api_url}/docs", timeout=5)
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    index = httpx.get(f"{running.api_url}/", timeout=5).json()
    assert index["links"]["docs"] == "/docs"
    assert "/health" in httpx.get(f"{running.api_url}/openapi.json", timeout=5).json()["paths"]


def test_pool_serves_concurrent_requests(running: Project) -> None:
    with httpx.Client(timeout=10) as client, ThreadPoolExecutor(max_workers=20) as pool:
        codes = list(
            pool.map(lambda _: client.get(f"{running.api_url}/health").status_code, range(100))
        )
    assert codes == [200] * 100


def test_api_container_sees_env_values(running: Project) -> None:
    info = httpx.get(f"{running.api_url}/api/v1/info", timeout=5).json()
    assert info["log_level"] == "debug"
    assert info["database"] == {"name": "testdb", "user": "tester"}
    assert info["redis"] == {"cache_db": 0, "broker_db": 1}


def test_docker_reports_every_container_healthy(running: Project) -> None:
    def all_healthy() -> bool:
        return all(
            running.container(s).attrs["State"]["Health"]["Status"] == "healthy"
            for s in ("postgres", "redis", "api")
        )

    poll(all_healthy, timeout=60, interval=0.5)


def test_security_defaults(running: Project) -> None:
    api = running.container("api")
    assert api.exec_run(["id", "-u"]).output.decode().strip() == "10001"
    found = api.exec_run(
        ["sh", "-c", "find / -xdev \\( -name .env -o -name 'devstack-ca-bundle*' \\) 2>/dev/null"]
    ).output.decode()
    assert found.strip() == ""
    for service in ("postgres", "redis", "api"):
        attrs = running.container(service).attrs
        assert all("docker.sock" not in (m.get("Source") or "") for m in attrs["Mounts"])
        for bindings in attrs["HostConfig"]["PortBindings"].values():
            assert all(b["HostIp"] == "127.0.0.1" for b in bindings)


def test_status_reports_the_stack_without_secrets(running: Project) -> None:
    table = running.run("status").stdout
    assert running.values["POSTGRES_PASSWORD"] not in table
    data = json.loads(running.run("status", "--json").stdout)
    assert data["project"] == running.name
    states = {s["service"]: s["state"] for s in data["services"]}
    assert states == {
        "postgres": "running",
        "redis": "running",
        "migrate": "exited",  # the one-shot job ran to completion
        "api": "running",
        "worker": "running",
        "worker-reports": "running",
    }
    assert data["services"][0]["ports"] == [
        f"postgresql://tester:***@127.0.0.1:{running.postgres_port}/testdb"
    ]
    assert running.values["POSTGRES_PASSWORD"] not in json.dumps(data)


def test_second_up_changes_nothing(running: Project) -> None:
    before = {s: running.container(s).id for s in ("postgres", "redis", "api")}
    plan = running.run("up", "--plan").stdout
    assert "recreate" not in plan and "create " not in plan and "build " not in plan
    output = running.run("up", "--quiet")
    assert running.values["POSTGRES_PASSWORD"] not in output.stdout + output.stderr
    assert {s: running.container(s).id for s in before} == before


def test_a_task_routed_to_the_reports_queue_runs_on_its_own_worker(running: Project) -> None:
    """stack.py's second Celery worker consumes the `reports` queue only; the default worker
    keeps the default queue."""
    from celery import Celery

    base = f"redis://127.0.0.1:{running.redis_port}"
    app = Celery("probe", broker=f"{base}/1", backend=f"{base}/2")
    app.conf.task_routes = {"service.tasks.report": {"queue": "reports"}}
    try:
        report = app.send_task("service.tasks.report", args=["weekly"]).get(timeout=60)
        record = app.send_task("service.tasks.record", args=["hello"]).get(timeout=60)
    finally:
        app.close()
    reports_host = running.container("worker-reports").attrs["Config"]["Hostname"]
    worker_host = running.container("worker").attrs["Config"]["Hostname"]
    assert report == {"subject": "weekly", "worker": f"celery@{reports_host}"}
    assert record["worker"] == f"celery@{worker_host}"
