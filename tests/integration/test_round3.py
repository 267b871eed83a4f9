"""Reliability, round 3 (issue 22): what broke when tried as a new user would. Each test failed
before its fix (see the closing note)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import docker

from tests.integration.conftest import REPO_ROOT, Project, poll


def test_restart_records_its_verdicts_as_up_does(project: Project) -> None:
    """Item 6: `status` right after `restart` reads restart's own verdicts (no new probe)."""
    project.run("up", "--quiet", "--timeout", "240", "postgres", "redis")
    project.run("restart", "--quiet", "redis")
    container = project.container("redis")
    container.reload()
    path = REPO_ROOT / ".devstack-cache" / f"ready-{project.name}.json"
    recorded = json.loads(path.read_text())
    # this very start of the container (its network endpoint, new at every start), not the
    # one `up` saw
    endpoints = container.attrs["NetworkSettings"]["Networks"].values()
    assert recorded.get(container.id) == ",".join(sorted(n["EndpointID"] for n in endpoints))
    assert project.container("postgres").id in recorded  # the other verdicts are kept


ONE_OFF = """
import sys
from dataclasses import replace
from pathlib import Path

from devstack.usecases import connect, load_project, run_one_off

project = load_project(Path(sys.argv[1]), Path(sys.argv[2]))
# PID 1 ignores SIGTERM and SIGINT, as pytest does in a one-off container
service = replace(
    project.stack.service("redis"),
    command=("sh", "-c", "trap '' TERM INT; echo started; sleep 120"),
    ports=(),
)

def write(chunk: bytes) -> None:
    sys.stdout.buffer.write(chunk)
    sys.stdout.buffer.flush()

try:
    run_one_off(connect(), project.stack, service, write)
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(130)
"""


def one_offs(client: docker.DockerClient, project: Project) -> list[str]:
    query = {"label": [f"devstack.project={project.name}", "devstack.one-off"]}
    return [c.name for c in client.containers.list(all=True, filters=query)]


def test_interrupting_a_one_off_ends_it_at_once(
    project: Project, docker_client: docker.DockerClient
) -> None:
    """Item 2: Ctrl-C during a one-off container (`test`, `migrate`...) whose program ignores
    the stop signal ends it at once (not after Docker's 10 s grace), leaving nothing."""
    project.run("up", "--quiet", "--timeout", "240", "redis")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVSTACK_")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(ONE_OFF),
            str(project.project_dir),
            str(project.env_file),
        ],
        env={**env, "PYTHONPATH": str(REPO_ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert proc.stdout is not None
    assert b"started" in proc.stdout.readline()
    assert one_offs(docker_client, project)
    interrupted = time.monotonic()
    proc.send_signal(signal.SIGINT)
    code = proc.wait(timeout=30)
    took = time.monotonic() - interrupted
    assert code == 130, proc.stdout.read()
    assert took < 3.0, f"the interrupted one-off took {took:.1f}s to end"
    poll(lambda: not one_offs(docker_client, project), timeout=5)


def test_held_containers_kept_from_an_interrupted_up_get_their_cpu_weight_back(
    project: Project,
) -> None:
    """Item 3: Ctrl-C while the API and the worker are held, then `up` again: they are kept,
    released by the re-sent signal, and must run at Docker's default CPU weight, not the
    held one."""
    command, env = project.command("up", "--quiet", "--timeout", "240")
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def held_and_running() -> bool:
        try:
            api = project.container("api")
        except docker.errors.NotFound:
            return False
        return bool(api.status == "running" and api.attrs["HostConfig"]["CpuShares"] == 128)

    try:
        poll(held_and_running, timeout=240, interval=0.05)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
    project.run("up", "--quiet", "--timeout", "240")
    for name in ("api", "worker"):
        container = project.container(name)
        assert container.attrs["HostConfig"]["CpuShares"] in (0, 1024), name
