"""Convergence and data safety across up/down, each test on its own project."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg
import docker
import httpx
import redis

from .conftest import Project, poll

SERVICES = ("postgres", "redis", "api")


def ids(project: Project) -> dict[str, str]:
    return {s: project.container(s).id for s in SERVICES}


def pg(project: Project, query: str) -> object:
    """One value of `query`; a script of several statements runs with `execute`."""

    async def run() -> object:
        conn = await asyncpg.connect(project.dsn, timeout=5)
        try:
            if ";" in query:
                return await conn.execute(query)
            return await conn.fetchval(query)
        finally:
            await conn.close()

    return asyncio.run(run())


def test_env_change_recreates_only_that_service(project: Project) -> None:
    project.run("up", "--quiet")
    before = ids(project)
    project.write_env(AI_AGENTS_LOG_LEVEL="warning")
    plan = project.run("up", "--plan").stdout
    assert "recreate  container  " + f"{project.name}-api" in plan
    assert "env AI_AGENTS_LOG_LEVEL added" in plan
    assert "drift" not in plan
    status = project.run("status").stdout
    assert "env AI_AGENTS_LOG_LEVEL added" in status
    project.run("up", "--quiet")
    after = ids(project)
    assert after["postgres"] == before["postgres"] and after["redis"] == before["redis"]
    assert after["api"] != before["api"]
    assert httpx.get(f"{project.api_url}/api/v1/info", timeout=5).json()["log_level"] == "warning"


def test_data_survives_down_and_only_down_volumes_deletes_it(project: Project) -> None:
    project.run("up", "--quiet")
    pg(project, "CREATE TABLE keep_me (v text); INSERT INTO keep_me VALUES ('row')")
    redis.Redis(port=project.redis_port).set("keep-me", "key")
    down = project.run("down")
    assert "kept volumes" in down.stdout
    assert project.resources()["containers"] == [] and project.resources()["networks"] == []
    assert len(project.resources()["volumes"]) == 2
    project.run("up", "--quiet")
    assert pg(project, "SELECT v FROM keep_me") == "row"
    assert redis.Redis(port=project.redis_port).get("keep-me") == b"key"
    # a recreate after a config change, and `docker restart`, keep the data too
    project.write_env(DEVSTACK_HEALTH_RETRIES="4")
    project.run("up", "--quiet")
    project.container("postgres").restart()
    project.container("redis").restart()
    project.run("up", "--quiet")
    assert pg(project, "SELECT v FROM keep_me") == "row"
    assert redis.Redis(port=project.redis_port).get("keep-me") == b"key"
    project.run("down", "--volumes")
    assert project.resources() == {"containers": [], "networks": [], "volumes": []}
    project.run("up", "--quiet")
    assert pg(project, "SELECT to_regclass('keep_me')::text") is None
    assert redis.Redis(port=project.redis_port).get("keep-me") is None


def test_down_on_nothing_succeeds(project: Project) -> None:
    result = project.run("down", "--volumes")
    assert "nothing to remove" in result.stdout


def test_other_projects_are_never_touched(
    project: Project, docker_client: docker.DockerClient, make_project: Callable[..., Project]
) -> None:
    decoy_labels = {"devstack.project": f"{project.name}x", "devstack.service": "postgres"}
    volume = docker_client.volumes.create(f"{project.name}_pgdata_decoy", labels=decoy_labels)
    image = project.values["DEVSTACK_REDIS_IMAGE"]
    decoy = docker_client.containers.create(
        image, name=f"{project.name}-decoy", labels=decoy_labels
    )
    try:
        project.run("up", "--quiet")
        project.run("status")
        project.run("down", "--volumes")
        decoy.reload()
        volume.reload()
        assert decoy.status == "created"
    finally:
        decoy.remove(force=True, v=True)
        volume.remove(force=True)


def test_health_503_while_postgres_is_down_and_recovers(project: Project) -> None:
    project.run("up", "--quiet")
    api_started = project.container("api").attrs["State"]["StartedAt"]
    project.container("postgres").stop()

    def failing_on_postgres() -> bool:
        response = httpx.get(f"{project.api_url}/health", timeout=5)
        body = response.json()
        return response.status_code == 503 and body["checks"]["postgres"]["status"] == "error"

    poll(failing_on_postgres, timeout=20)
    project.container("postgres").start()
    poll(lambda: httpx.get(f"{project.api_url}/health", timeout=5).status_code == 200, 30)
    assert project.container("api").attrs["State"]["StartedAt"] == api_started
