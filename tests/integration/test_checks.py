"""The plain recipes' readiness checks on a real engine: `r.tcp` sees a listener inside the
container, and an image it cannot look into (no `cat`) fails `up` at once, saying what to
declare instead, not at the deadline; `r.log_line`, `r.exec_check`, a one-shot job and a
Docker health command (`health=`, which `up` also waits for) bring a stack up in order."""

from __future__ import annotations

import io
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.integration.conftest import (
    TEST_PREFIX,
    Project,
    free_port,
    inherited_settings,
    stack_project,
)

from .test_faults import assert_clear_failure

STACK = """
from devstack import recipes as r

def stack(env):
    port = r.publish(env, "CHECKS_WEB_PORT", 18081, 8000)
    web = r.container(
        env,
        "web",
        env.image("CHECKS_WEB_IMAGE", "python:3.12-slim"),
        command=("python3", "-m", "http.server", "8000"),
        ports=[port],
        ready=r.tcp(port),
        init=True,
    )
    return r.stack(env, web)
"""
PYTHON_IMAGE = inherited_settings().get("DEVSTACK_PYTHON_IMAGE", "python:3.12-slim")


@pytest.fixture
def no_cat_image(docker_client: docker.DockerClient) -> Iterator[str]:
    """The Python image without `cat` (as a distroless image would be), under a test tag."""
    tag = f"{TEST_PREFIX}{os.getpid()}-nocat:{secrets.token_hex(3)}"
    dockerfile = f"FROM {PYTHON_IMAGE}\nRUN rm -f /bin/cat /usr/bin/cat\n".encode()
    docker_client.images.build(fileobj=io.BytesIO(dockerfile), tag=tag, rm=True)
    yield tag
    docker_client.images.remove(tag, noprune=False)


def checks_project(tmp_path: Path, client: docker.DockerClient, image: str) -> Project:
    settings = {"CHECKS_WEB_PORT": str(free_port()), "CHECKS_WEB_IMAGE": image}
    return stack_project(tmp_path / "checks", client, STACK, **settings)


def test_tcp_sees_the_listener_inside_the_container(
    tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    project = checks_project(tmp_path, docker_client, PYTHON_IMAGE)
    try:
        result = project.run("up", "--quiet", "--timeline")
        assert "TCP listener on port 8000" in result.stdout, result.stdout
    finally:
        project.remove_everything()


def test_an_image_tcp_cannot_look_into_fails_up_at_once(
    tmp_path: Path, docker_client: docker.DockerClient, no_cat_image: str
) -> None:
    project = checks_project(tmp_path, docker_client, no_cat_image)
    try:
        started = time.monotonic()
        result = project.run("up", "--timeout", "60", check=False)
        took = time.monotonic() - started
        assert_clear_failure(result, 1, "web:", "has no `cat`", "r.log_line")
        assert took < 30, f"up took {took:.1f}s: it waited for the deadline"
    finally:
        project.remove_everything()


RECIPES = """
from devstack import recipes as r

SLEEP = "import time; time.sleep(1000)"


def stack(env):
    image = env.image("CHECKS_WEB_IMAGE", "python:3.12-slim")
    seed = r.container(
        env, "seed", image, command=("python3", "-c", "print('seeded')"), one_shot=True
    )
    logger = r.container(
        env, "logger", image,
        command=("python3", "-u", "-c", f"print('listening now'); {SLEEP}"),
        ready=r.log_line("listening now"), init=True, depends_on=[r.completed_of(seed)],
    )
    probe = r.container(
        env, "probe", image,
        command=("python3", "-c", f"import time; time.sleep(1); open('/tmp/ok', 'w'); {SLEEP}"),
        ready=r.exec_check("test", "-f", "/tmp/ok"), init=True,
    )
    checked = r.container(
        env, "checked", image,
        command=("python3", "-c", f"import time; time.sleep(1); open('/tmp/ok', 'w'); {SLEEP}"),
        health=env.text("CHECKS_HEALTH", "test -f /tmp/ok").split(),
        init=True, depends_on=[logger, probe],
    )
    return r.stack(env, seed, logger, probe, checked)
"""


def recipes_project(tmp_path: Path, client: docker.DockerClient, **values: str) -> Project:
    values = {"CHECKS_WEB_IMAGE": PYTHON_IMAGE, **values}
    return stack_project(tmp_path / "recipes", client, RECIPES, **values)


def test_the_plain_recipes_checks_bring_a_stack_up_in_order(
    tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    project = recipes_project(tmp_path, docker_client)
    try:
        timeline = project.run("up", "--quiet", "--timeline").stdout
        passed = {
            line.split()[0]: line.partition("check passed: ")[2].split(" after")[0]
            for line in timeline.splitlines()
            if "check passed: " in line
        }
        assert passed == {
            "seed": "completed (exit 0)",
            "logger": "log line /listening now/",
            "probe": "exec test -f /tmp/ok",
            # the health command, run by devstack as its readiness check (Docker runs it
            # only after an interval); Docker's check is the same command, in its own form
            "checked": "exec test -f /tmp/ok",
        }, timeline
        config = docker_client.containers.get(f"{project.name}-checked").attrs["Config"]
        assert config["Healthcheck"]["Test"] == ["CMD", "test", "-f", "/tmp/ok"]
    finally:
        project.remove_everything()


def test_a_health_command_the_image_lacks_fails_up_at_once(
    tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    project = recipes_project(tmp_path, docker_client, CHECKS_HEALTH="no-such-probe --ok")
    try:
        started = time.monotonic()
        result = project.run("up", "--timeout", "60", check=False)
        assert_clear_failure(result, 1, "checked:", "no-such-probe", "not in its image")
        assert time.monotonic() - started < 30, "up waited for the deadline"
    finally:
        project.remove_everything()
