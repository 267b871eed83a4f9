"""The engines most users run (issue 22, item 9): Docker 25+ (API 1.44+) beside the machine's
20.10 (API 1.41). `bash scripts/modern-docker.sh start` runs Docker 26.1 on its own socket
(CI does; the base images named in .env are loaded into it). The engine-dependent paths run
there for real: a build, networks, health checks with start_interval, exec, restart, down."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import httpx
import pytest

from tests.conftest import IN_CI
from tests.integration.conftest import Project, new_project, poll

SOCKET = Path(os.environ.get("DEVSTACK_MODERN_DOCKER_DIR", "/var/tmp/devstack-modern-docker"))
HOST = f"unix://{SOCKET / 'docker.sock'}"
HINT = "start it: `bash scripts/modern-docker.sh start` (CI does)"


@pytest.fixture(scope="module")
def modern(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """A test project on the modern engine (its commands get DOCKER_HOST)."""
    try:
        client = docker.DockerClient(base_url=HOST)
        api = client.version()["ApiVersion"]
    except Exception as exc:  # not running here
        message = f"the modern Docker engine is not running at {HOST} ({exc}); {HINT}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    assert tuple(int(x) for x in api.split(".")) >= (1, 44), api
    # a long interval: without start_interval, Docker would say "starting" for 30 s
    project = new_project(tmp_path_factory.mktemp("modern"), client, DEVSTACK_HEALTH_INTERVAL="30")
    original = project.run

    def run(*args: str, **kwargs: object) -> object:
        return original(*args, env_extra={"DOCKER_HOST": HOST}, **kwargs)  # type: ignore[arg-type]

    project.run = run  # type: ignore[method-assign]
    try:
        yield project
    finally:
        project.remove_everything()
        client.close()


def test_up_builds_and_docker_says_healthy_within_seconds(modern: Project) -> None:
    modern.run("up", "--quiet", "--timeout", "300")
    done = time.monotonic()
    assert httpx.get(f"{modern.api_url}/api/v1/ready", timeout=5).status_code == 200
    checked = [
        c
        for c in modern.client.containers.list(
            filters={"label": [f"devstack.project={modern.name}"]}
        )
        if c.attrs["State"].get("Health")
    ]
    with_health = {c.name.removeprefix(f"{modern.name}-") for c in checked}
    assert {"postgres", "redis", "api", "worker"} <= with_health

    def all_healthy() -> bool:
        for container in checked:
            container.reload()
            if container.attrs["State"]["Health"]["Status"] != "healthy":
                return False
        return True

    poll(all_healthy, timeout=10, interval=0.2)
    assert time.monotonic() - done < 10  # not one 30 s interval later


def test_status_tells_the_truth_about_start_interval(modern: Project) -> None:
    out = modern.run("status").stdout
    assert "no start_interval" not in out and "older than 1.44" not in out
    assert "engine: DOCKER_HOST" in out


def test_per_test_databases_in_the_scratch_server(modern: Project, tmp_path: Path) -> None:
    """The pytest plugin's scratch server on API 1.45: a tmpfs data directory, a port the
    engine picks, the template copied in across the stack's network."""
    from tests.integration.test_pytest_plugin import pytest_cmd, write_suite
    from tests.integration.test_scratch import FRESH_SUITE

    suite = write_suite(tmp_path, modern)
    (suite / "test_db.py").write_text(FRESH_SUITE)
    command, env, seen = pytest_cmd(suite, modern)
    env["DOCKER_HOST"] = HOST
    result = subprocess.run(
        command, cwd=suite, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr
    [found] = {path.read_text() for path in seen.iterdir()}
    port, rows, tables, fsync = found.split()
    assert (rows, tables, fsync) == ("1", "True", "off")
    assert int(port) != modern.postgres_port


def test_exec_restart_and_down_on_the_modern_engine(modern: Project) -> None:
    result = modern.run("psql", "-tAc", "SELECT 40 + 2")
    assert result.stdout.strip() == "42"
    modern.run("restart", "--quiet", "api")
    assert httpx.get(f"{modern.api_url}/api/v1/ready", timeout=5).status_code == 200
    modern.run("down", "--volumes", "--quiet")
    assert modern.resources() == {"containers": [], "networks": [], "volumes": []}
