"""A container whose main process ignores the stop signal (a PID 1 without a handler) costs
Docker's whole stop timeout at every `down`, `restart` and recreate: devstack says so, with
the fix, and `init=True` (Docker's init as PID 1, which forwards the signal) stops it at once."""

from __future__ import annotations

import time
from pathlib import Path

import docker

from tests.integration.conftest import inherited_settings, stack_project

STACK = """
from devstack import recipes as r

def stack(env):
    deaf = r.container(
        env,
        "deaf",
        env.image("DEVSTACK_PYTHON_IMAGE", "python:3.12-slim"),
        command=("python3", "-c", "import time; time.sleep(1000)"),
        init=env.flag("STOP_TEST_INIT", False),
    )
    return r.stack(env, deaf)
"""
NOTE = "did not stop within 10 s of SIGTERM and was killed"


def test_a_container_deaf_to_its_stop_signal_is_named_and_init_stops_it_at_once(
    tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    image = inherited_settings().get("DEVSTACK_PYTHON_IMAGE", "python:3.12-slim")
    project = stack_project(tmp_path / "stop", docker_client, STACK, DEVSTACK_PYTHON_IMAGE=image)
    try:
        project.run("up", "--quiet")
        restart = project.run("restart", "deaf")
        assert NOTE in restart.stdout and "init=True" in restart.stdout, restart.stdout
        down = project.run("down")
        assert NOTE in down.stdout and "init=True" in down.stdout, down.stdout

        project.write_env(STOP_TEST_INIT="true")
        project.run("up", "--quiet")
        started = time.monotonic()
        down = project.run("down")
        assert time.monotonic() - started < 5, down.stdout  # not Docker's 10 s stop timeout
        assert NOTE not in down.stdout
    finally:
        project.remove_everything()
