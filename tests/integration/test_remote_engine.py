"""A Docker engine on another host (issue 21, part 2), for real: `bash scripts/remote-docker.sh
load` runs a second dockerd in a network namespace at tcp://10.200.0.2:2375 (and an sshd for
ssh://root@10.200.0.2) with the base images loaded (CI does). Its published ports are reached
at 10.200.0.2, never on this machine's loopback; its containers cannot see this machine's files
(the test never relies on the shared filesystem: dev mode is refused, not mounted).
Traffic goes only to 10.200.0.x. The API image is built on this machine's engine when missing
and loaded there (the namespace has no registry and no route out)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import httpx
import pytest

from tests.conftest import IN_CI
from tests.integration.conftest import Project, new_project, remove_project
from tests.integration.test_other_stack import minimal_project

DIR = Path(os.environ.get("DEVSTACK_REMOTE_DOCKER_DIR", "/var/tmp/devstack-remote-docker"))
ADDR = os.environ.get("DEVSTACK_REMOTE_ADDR", "10.200.0.2")
HOST = f"tcp://{ADDR}:2375"
NETNS = "/var/run/netns/devstack-remote"
HINT = "start it: `bash scripts/remote-docker.sh load` (CI does)"


def remote_client() -> docker.DockerClient:
    try:
        client = docker.DockerClient(base_url=HOST, timeout=60)
        client.ping()
    except Exception as exc:  # not running here
        message = f"the remote Docker engine is not running at {HOST} ({exc}); {HINT}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return client


def on_remote(project: Project, docker_host: str = HOST) -> Project:
    """`project.run` with DOCKER_HOST pointing at the remote engine."""
    original = project.run

    def run(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
        extra = {"DOCKER_HOST": docker_host, **dict(kwargs.pop("env_extra", None) or {})}  # type: ignore[call-overload]
        return original(*args, env_extra=extra, **kwargs)  # type: ignore[arg-type]

    project.run = run  # type: ignore[method-assign]
    return project


def load_built_images(project: Project, client: docker.DockerClient) -> None:
    """The project's built images on the remote engine: built here when missing, then moved
    with `docker save | docker -H … load` (the remote engine reaches no package index)."""
    from devstack.converge.build import build_image, image_tag
    from devstack.declare.settings import load_settings
    from devstack.declare.stackfile import declare
    from devstack.engine.docker import DockerEngine

    settings = load_settings(project.project_dir, project.env_file, environ={})
    builds = {s.build for s in declare(settings).services if s.build}
    local = DockerEngine.connect()
    for build in builds:
        tag = image_tag(build)
        try:
            client.images.get(tag)
            continue
        except docker.errors.ImageNotFound:
            pass
        if local.image_info(tag) is None:
            build_image(local, build, tag, lambda line: None)
        save = subprocess.Popen(["docker", "save", tag], stdout=subprocess.PIPE)
        subprocess.run(["docker", "-H", HOST, "load", "-q"], stdin=save.stdout, check=True)
        assert save.wait() == 0


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """The repo's stack as a test project on the remote engine (dev mode off: refused there)."""
    client = remote_client()
    project = new_project(tmp_path_factory.mktemp("remote"), client, DEVSTACK_DEV_MODE="false")
    load_built_images(project, client)
    try:
        yield on_remote(project)
    finally:
        project.remove_everything()
        client.close()


@pytest.fixture
def minimal(tmp_path: Path) -> Iterator[Project]:
    """examples/minimal (Postgres and a web app, no build) on the remote engine."""
    client = remote_client()
    project = minimal_project(tmp_path, client)
    try:
        yield on_remote(project)
    finally:
        remove_project(client, project.name)
        client.close()


def test_up_from_nothing_status_logs_and_down_on_a_remote_engine(remote: Project) -> None:
    started = time.monotonic()
    up = remote.run("up", "--quiet", "--timeout", "300")
    took = time.monotonic() - started
    print(f"up from nothing on the remote engine: {took:.1f} s")
    port = remote.values["DEVSTACK_API_PORT"]
    assert f"http://{ADDR}:{port}" in up.stdout  # the printed URLs name the engine's host
    assert "127.0.0.1" not in up.stdout
    assert httpx.get(f"http://{ADDR}:{port}/api/v1/ready", timeout=5).status_code == 200

    assert f"engine: DOCKER_HOST ({HOST})" in remote.run("status").stdout
    shown = json.loads(remote.run("status", "--json").stdout)
    assert shown["engine"] == {"source": "DOCKER_HOST", "context": "default", "host": HOST}
    ports = {row["service"]: row["ports"] for row in shown["services"]}
    assert ports["api"] == [f"http://{ADDR}:{port}"]
    assert f"@{ADDR}:{remote.postgres_port}/" in ports["postgres"][0]

    logs = remote.run("logs", "api").stdout
    assert "/api/v1/ready" in logs or "Application startup complete" in logs, logs[-2000:]
    assert remote.run("psql", "-tAc", "SELECT 40 + 2").stdout.strip() == "42"

    remote.run("down", "--volumes", "--quiet")
    assert remote.resources() == {"containers": [], "networks": [], "volumes": []}


def test_dev_mode_is_refused_with_one_line_saying_what_to_do(remote: Project) -> None:
    result = remote.run("up", "--quiet", check=False, env_extra={"DEVSTACK_DEV_MODE": "true"})
    assert result.returncode == 2, result.stdout + result.stderr
    error = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and f"Docker engine on {ADDR} cannot see" in error[0], result.stderr
    assert "DEVSTACK_DEV_MODE=false" in result.stderr
    assert remote.resources() == {"containers": [], "networks": [], "volumes": []}


def test_readiness_probes_reach_the_engines_host(minimal: Project) -> None:
    """Regression (issue 21): the probes went to 127.0.0.1, so `up` waited its whole timeout
    and then said "not ready" although the service was up on the engine's host."""
    started = time.monotonic()
    result = minimal.run("up", "--quiet", "--timeout", "60", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert time.monotonic() - started < 45
    web = minimal.values["MINI_WEB_PORT"]
    assert httpx.get(f"http://{ADDR}:{web}/ready", timeout=5).status_code == 200


def test_the_engines_address_as_bind_address_is_not_a_false_port_conflict(
    minimal: Project,
) -> None:
    """Regression (issue 21): with DEVSTACK_BIND_ADDRESS set to the engine's address, the
    free-port check bound on this machine and said "already in use by another process"."""
    result = minimal.run(
        "up",
        "--quiet",
        "--timeout",
        "60",
        check=False,
        env_extra={"DEVSTACK_BIND_ADDRESS": ADDR},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    status = minimal.run("status", env_extra={"DEVSTACK_BIND_ADDRESS": ADDR}).stdout
    assert f"http://{ADDR}:{minimal.values['MINI_WEB_PORT']}" in status


def test_a_port_taken_on_the_engines_host_is_named_before_anything_starts(
    minimal: Project,
) -> None:
    """A process in the engine's namespace listens on the web port: refused up front."""
    port = int(minimal.values["MINI_WEB_PORT"])
    listener = subprocess.Popen(
        [
            "nsenter",
            f"--net={NETNS}",
            "python3",
            "-c",
            "import socket, sys, time\n"
            "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
            f"s.bind(('0.0.0.0', {port})); s.listen(); print('up', flush=True); time.sleep(120)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert listener.stdout is not None and listener.stdout.readline().strip() == "up"
        result = minimal.run("up", "--quiet", check=False)
    finally:
        listener.kill()
        listener.wait()
    assert result.returncode == 1, result.stdout + result.stderr
    assert (
        f"host port {port} (MINI_WEB_PORT) on the Docker engine's host {ADDR} is already in use "
        "by another process" in result.stderr
    ), result.stderr
    assert minimal.resources()["containers"] == []  # refused before anything was created


def test_ssh_engine_up_exec_status_down(minimal: Project) -> None:
    """ssh://root@ADDR through the OpenSSH client (the script's key and known-hosts file, via
    its `ssh -F` wrapper first on PATH; ~/.ssh is never touched)."""
    wrapper = DIR / "bin" / "ssh"
    if not wrapper.exists():
        message = f"no sshd beside the remote engine ({wrapper} missing); {HINT}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    over_ssh = {
        "DOCKER_HOST": f"ssh://root@{ADDR}",
        "PATH": f"{wrapper.parent}:{os.environ['PATH']}",
    }
    minimal.run("up", "--quiet", "--timeout", "120", env_extra=over_ssh)
    exec_out = minimal.run("exec", "db", "--", "echo", "over-ssh", env_extra=over_ssh).stdout
    assert exec_out.strip() == "over-ssh"  # once: the output is not read twice
    status = minimal.run("status", env_extra=over_ssh).stdout
    assert f"ssh://root@{ADDR}" in status and f"{ADDR}:{minimal.values['MINI_WEB_PORT']}" in status
    minimal.run("down", "--volumes", "--quiet", env_extra=over_ssh)
    assert minimal.resources() == {"containers": [], "networks": [], "volumes": []}
