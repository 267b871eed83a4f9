"""What piles up is bounded, on a real engine and Postgres: reuse tags of old reuse keys, the
reuse tags `down --volumes` leaves, migrated templates of old migration files (issue 22, 7)."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncpg
import docker
import pytest

from devstack.converge import build as builds
from devstack.declare.settings import load_settings
from devstack.declare.spec import Build, ReusedStage
from devstack.engine.docker import DockerEngine
from devstack.usecases import databases
from tests.integration.conftest import Project
from tests.integration.test_pytest_plugin import databases as database_names

BASE = "devstack-local/redis:7-bookworm"  # tagged again under test names: untagging is harmless


@pytest.fixture
def repository(docker_client: docker.DockerClient) -> Iterator[str]:
    """A repository name of this test alone; every tag under it is removed at the end."""
    name = f"dstest-{os.getpid()}-{secrets.token_hex(3)}/api"
    yield name
    for image in docker_client.images.list():
        for tag in image.tags:
            if tag.startswith((f"{name}:", f"{name}-deps:", f"{name}-deps-users:")):
                docker_client.images.remove(tag, noprune=True)


def test_reuse_tags_of_old_keys_are_pruned_and_down_volumes_leaves_none(
    repository: str, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    base = docker_client.images.get(BASE)
    deps = f"{repository}-deps"
    for key in ("k4", "k3", "k2", "k1"):  # k1 tagged last: the newest
        for suffix in ("builder", "builder-0123abcd", "test-deps"):
            base.tag(deps, f"{key}-{suffix}")
    engine = DockerEngine.connect()
    build = Build(context=tmp_path, repository=repository)

    builds._forget_old_keys(engine, build, f"{deps}:k4-builder")  # k4: the current key
    keys = {ref.rpartition(":")[2].partition("-")[0] for ref in engine.image_tags(deps)}
    assert keys == {"k4", "k1", "k2"}  # k3, beyond the newest 3, is gone
    assert docker_client.images.get(BASE)  # the image itself stays

    # `down --volumes`: kept while another project's container runs the repository's image
    base.tag(repository, "abc")
    other = docker_client.containers.create(
        f"{repository}:abc", labels={"devstack.project": "dstest-other"}
    )
    try:
        assert builds.forget_reuse_tags(engine, [build], "dstest-mine") == []
        assert len(engine.image_tags(deps)) == 9
    finally:
        other.remove(force=True)
    removed = builds.forget_reuse_tags(engine, [build], "dstest-mine")
    assert len(removed) == 9 and engine.image_tags(deps) == {}


def test_a_build_records_its_project_and_down_volumes_keeps_what_another_project_uses(
    repository: str, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    """Two checkouts build the same repository; the first one's `down --volumes` leaves the
    reuse tags the second one (down, no container left) starts its next build from."""
    (tmp_path / "Dockerfile").write_text(
        "ARG BASE\nARG DEPS_FROM=${BASE}\n"
        "FROM ${DEPS_FROM} AS builder\nRUN echo deps > /deps\n"
        "FROM ${BASE} AS runtime\nCOPY --from=builder /deps /deps\n"
    )
    build = Build(
        context=tmp_path,
        repository=repository,
        args=(("BASE", BASE),),
        reuse=(ReusedStage("builder", "DEPS_FROM", ()),),
    )
    engine = DockerEngine.connect()
    for project in ("dstest-first", "dstest-second"):
        builds.build_image(engine, build, builds.image_tag(build), lambda _: None, None, project)
    users = f"{repository}-deps-users"
    assert set(engine.image_tags(users)) == {f"{users}:dstest-first", f"{users}:dstest-second"}
    deps = engine.image_tags(f"{repository}-deps")
    assert len(deps) == 2  # the stage's latest image and its base

    assert builds.forget_reuse_tags(engine, [build], "dstest-first") == [f"{users}:dstest-first"]
    assert engine.image_tags(f"{repository}-deps").keys() == deps.keys()
    removed = builds.forget_reuse_tags(engine, [build], "dstest-second")
    assert removed == [f"{users}:dstest-second", *sorted(deps)]
    assert engine.image_tags(f"{repository}-deps") == engine.image_tags(users) == {}


def sql(project: Project, *statements: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(project.dsn)
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


def test_templates_of_old_migrations_are_dropped_beyond_the_newest(
    make_project: Callable[..., Project],
) -> None:
    project = make_project()
    project.run("up", "--quiet")
    for n in range(1, 5):  # four templates of older migration files, day n
        name = f"dst_tpl_old{n}"
        comment = json.dumps({"devstack": "template", "at": f"2026-01-0{n}T00:00:00Z"})
        sql(
            project,
            f"CREATE DATABASE {name}",
            f"ALTER DATABASE {name} WITH ALLOW_CONNECTIONS false IS_TEMPLATE true",
            f"COMMENT ON DATABASE {name} IS '{comment}'",
        )
    sql(project, "CREATE DATABASE dst_keep_me_not_a_template")
    settings = load_settings(project.project_dir, project.env_file, environ={})

    current = databases.ensure_template(settings)
    names = database_names(project)
    templates = sorted(n for n in names if n.startswith("dst_tpl_"))
    assert templates == sorted([current, "dst_tpl_old4", "dst_tpl_old3"])
    assert databases.KEEP_TEMPLATES == 3
    assert "dst_keep_me_not_a_template" in names
