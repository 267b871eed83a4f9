"""Issue 10's convergence bugs on a real engine: URL-special passwords, a removed network, a
stale "unhealthy", another project's image tag, and a password the data volume does not know."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import asyncpg
import docker
import httpx

from .conftest import Project, poll
from .test_faults import assert_clear_failure, copy_repo


def test_password_with_url_special_characters_reaches_the_api(
    make_project: Callable[..., Project],
) -> None:
    project = make_project(POSTGRES_PASSWORD="p@ss:w/rd%41?x#y")
    project.write_env(POSTGRES_PASSWORD="'p@ss:w/rd%41?x#y'")  # quoted: '#' starts a comment
    project.values["POSTGRES_PASSWORD"] = "p@ss:w/rd%41?x#y"
    project.run("up", "--quiet")
    health = httpx.get(f"{project.api_url}/health", timeout=5).json()
    assert health["checks"]["postgres"]["status"] == "ok", health
    status = project.run("status", "--json").stdout
    assert "p@ss" not in status and "rd%41" not in status


def _count_rows(project: Project) -> int:
    async def count() -> int:
        conn = await asyncpg.connect(project.dsn)
        try:
            await conn.execute("CREATE TABLE IF NOT EXISTS kept (x int)")
            return int(await conn.fetchval("SELECT count(*) FROM kept"))
        finally:
            await conn.close()

    return asyncio.run(count())


def test_up_recreates_containers_whose_network_was_removed(
    project: Project, docker_client: docker.DockerClient
) -> None:
    project.run("up", "--quiet")

    async def insert() -> None:
        conn = await asyncpg.connect(project.dsn)
        await conn.execute("CREATE TABLE kept (x int); INSERT INTO kept VALUES (1)")
        await conn.close()

    asyncio.run(insert())
    query = {"label": [f"devstack.project={project.name}"]}
    for container in docker_client.containers.list(filters=query):
        container.stop(timeout=10)
    docker_client.networks.get(f"{project.name}_net").remove()  # what `network prune` does
    plan = project.run("up", "--plan").stdout
    assert f"{project.name}-postgres" in plan and "its network" in plan, plan
    project.run("up", "--quiet")
    assert project.run("up", "--quiet").returncode == 0  # converged: a second up is a no-op
    assert _count_rows(project) == 1  # the data volume stayed


def test_a_stale_unhealthy_status_does_not_block_up(project: Project) -> None:
    project.write_env(DEVSTACK_HEALTH_INTERVAL="1", DEVSTACK_HEALTH_TIMEOUT="1")
    project.run("up", "--quiet")

    def api_health() -> str:
        return str(project.container("api").attrs["State"]["Health"]["Status"])

    poll(lambda: api_health() == "healthy", 60)  # its start period is over
    project.container("postgres").kill()
    poll(lambda: api_health() == "unhealthy", 60)
    result = project.run("up", "--quiet", check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_tag_another_project_uses_is_not_removed(
    tmp_path: Path, make_project: Callable[..., Project], docker_client: docker.DockerClient
) -> None:
    first = make_project(copy_repo(tmp_path / "first"))
    second = make_project(copy_repo(tmp_path / "second"))  # the same inputs: the same tag
    first.run("up", "--quiet", "api")
    second.run("up", "--quiet", "api")
    shared = first.container("api").attrs["Config"]["Image"]
    assert second.container("api").attrs["Config"]["Image"] == shared
    with (first.project_dir / "service" / "main.py").open("a") as handle:
        handle.write("\n# a change in the first checkout only\n")
    first.run("up", "--quiet", "api")
    assert first.container("api").attrs["Config"]["Image"] != shared
    docker_client.images.get(shared)  # still there: the second project runs it
    assert "build " not in second.run("up", "--plan").stdout
    # once nobody uses a tag devstack built, the next replacement drops it
    mine = first.container("api").attrs["Config"]["Image"]
    with (first.project_dir / "service" / "main.py").open("a") as handle:
        handle.write("\n# another change\n")
    first.run("up", "--quiet", "api")
    assert not docker_client.images.list(name=mine)


def test_a_password_the_volume_does_not_know_fails_at_once(project: Project) -> None:
    project.run("up", "--quiet", "postgres")
    project.run("down")
    project.write_env(POSTGRES_PASSWORD="a-new-password")
    started = time.monotonic()
    result = project.run("up", "--quiet", "--timeout", "120", "postgres", check=False)
    assert time.monotonic() - started < 30
    assert_clear_failure(result, 1, "postgres refused the configured login", "down --volumes")
