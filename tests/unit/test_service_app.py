"""The API without Docker: routes, and health checks that fail fast against dead dependencies."""

from __future__ import annotations

import importlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.config import Settings
from service.main import create_app

PASSWORD = "s3cret-pw"
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A local TCP port with nothing listening on it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def blackhole() -> Iterator[int]:
    """A port that accepts TCP connections (kernel backlog) but never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock.getsockname()[1]


def dead_settings(**overrides: object) -> Settings:
    """Settings pointing Postgres and Redis at closed local ports."""
    values: dict[str, object] = {
        "database_url": f"postgresql+asyncpg://app:{PASSWORD}@127.0.0.1:{free_port()}/appdb",
        "redis_url": f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0",
        "celery_broker_url": "redis://127.0.0.1:6399/1",
        "health_timeout_s": 1.0,
        "environment": "staging",
        "log_level": "warning",
    }
    values.update(overrides)
    return Settings.model_validate(values)


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(create_app(dead_settings())) as test_client:
        yield test_client


def test_live_is_always_ok(client: TestClient) -> None:
    response = client.get("/api/v1/live")
    assert response.status_code == 200
    assert response.json() == {"status": "alive"}


def test_index_links(client: TestClient) -> None:
    body = client.get("/").json()
    assert body["name"] and body["version"]
    links = set(body["links"].values())
    assert {"/docs", "/health", "/api/v1/ready", "/api/v1/live"} <= links
    for link in links:
        assert client.get(link).status_code in {200, 503}, link


def test_openapi_lists_the_routes(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/", "/health", "/api/v1/ready", "/api/v1/live", "/api/v1/info"} <= set(paths)
    assert "503" in paths["/health"]["get"]["responses"]
    assert client.get("/docs").status_code == 200


def test_info_shows_config_without_secrets(client: TestClient) -> None:
    response = client.get("/api/v1/info")
    assert response.status_code == 200
    assert response.json() == {
        "environment": "staging",
        "log_level": "warning",
        "redis": {"cache_db": 0, "broker_db": 1},
        "database": {"name": "appdb", "user": "app"},
    }
    assert PASSWORD not in response.text


@pytest.mark.parametrize("path", ["/health", "/api/v1/ready"])
def test_checks_fail_fast_when_nothing_listens(client: TestClient, path: str) -> None:
    started = time.monotonic()
    response = client.get(path)
    elapsed = time.monotonic() - started

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "error"
    for name in ("postgres", "redis"):
        check = body["checks"][name]
        assert check["status"] == "error"
        assert check["error"]
        assert check["latency_ms"] >= 0
    assert elapsed < 3.0
    assert PASSWORD not in response.text


def test_checks_time_out_when_servers_never_answer(blackhole: int) -> None:
    settings = dead_settings(
        database_url=f"postgresql://app:{PASSWORD}@127.0.0.1:{blackhole}/appdb",
        redis_url=f"redis://127.0.0.1:{blackhole}/0",
        health_timeout_s=0.5,
    )
    with TestClient(create_app(settings)) as client:
        for _ in range(2):  # a timed-out check leaves nothing behind that blocks the next one
            started = time.monotonic()
            response = client.get("/health")
            elapsed = time.monotonic() - started

            assert response.status_code == 503
            checks = response.json()["checks"]
            assert checks["postgres"] == {
                "status": "error",
                "error": "timed out after 0.5s",
                "latency_ms": checks["postgres"]["latency_ms"],
            }
            assert checks["redis"]["error"] == "timed out after 0.5s"
            assert elapsed < 3.0


def test_importing_main_reads_no_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("AI_AGENTS_"):
            monkeypatch.delenv(name)
    monkeypatch.delitem(sys.modules, "service.main")
    module = importlib.import_module("service.main")
    with pytest.raises(SystemExit) as excinfo:
        module.app  # noqa: B018  # what uvicorn does: builds the app from the environment
    assert str(excinfo.value.code) == (
        "configuration error: AI_AGENTS_DATABASE_URL: field required"
    )


def test_task_routes_answer_503_fast_when_the_broker_is_down(client: TestClient) -> None:
    started = time.monotonic()
    response = client.post("/api/v1/tasks", json={"message": "hello"})
    assert response.status_code == 503
    assert response.json()["detail"].startswith("task queue: ")
    status = client.get("/api/v1/tasks/00000000-0000-0000-0000-000000000000")
    assert status.status_code == 503
    assert time.monotonic() - started < 10.0


def test_task_routes_validate_their_input(client: TestClient) -> None:
    assert client.post("/api/v1/tasks", json={"message": ""}).status_code == 422
    assert client.post("/api/v1/tasks", json={"message": "x", "work_s": -1}).status_code == 422
    assert client.get("/api/v1/tasks/not-a-uuid").status_code == 422
    paths = client.get("/openapi.json").json()["paths"]
    assert "202" in paths["/api/v1/tasks"]["post"]["responses"]
    assert "404" in paths["/api/v1/tasks/{task_id}"]["get"]["responses"]


def test_api_start_does_not_import_celery() -> None:
    """Celery loads on the first task request: API start (and reload) stays as fast as before."""
    code = (
        "import sys; from service.main import create_app; from service.config import Settings; "
        "create_app(Settings(database_url='postgresql://a@h/d')); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'celery', 'kombu'}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert result.stdout.strip() in {"[]", "['celery']"}  # the bare package is a lazy stub
