"""Integration harness: each test project gets its own name, free host ports and env file,
runs the real CLI in a subprocess, and is removed afterwards by its label — nothing else."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import pytest

from devstack.converge.build import USERS_SUFFIX
from devstack.declare.envfile import read_env_file

REPO_ROOT = Path(__file__).resolve().parents[2]
# Settings a test project inherits from the developer's/CI's .env: which images, which CA.
INHERITED = (
    "DEVSTACK_POSTGRES_IMAGE",
    "DEVSTACK_REDIS_IMAGE",
    "DEVSTACK_PYTHON_IMAGE",
    "DEVSTACK_CA_BUNDLE",
    "DEVSTACK_PROMETHEUS_IMAGE",
    "DEVSTACK_POSTGRES_EXPORTER_IMAGE",
    "DEVSTACK_REDIS_EXPORTER_IMAGE",
)
OWN_PREFIXES = ("DEVSTACK_", "POSTGRES_", "AI_AGENTS_")
TEST_PREFIX = "dstest-"  # every test project is named dstest-<pid of its pytest>-<random>
# one random password per pytest process: its projects share Postgres' init template (which
# a password keys) in the repo's .devstack-cache instead of each making its own
SESSION_PASSWORD = f"pw-{secrets.token_hex(6)}"
# the user cache devstack keeps init templates in (devstack.converge.templates): one per pytest
# process, for it and every devstack it runs, so tests neither read nor evict the developer's
CACHE_HOME = Path(tempfile.gettempdir()) / f"{TEST_PREFIX}cache-{os.getpid()}"
os.environ["XDG_CACHE_HOME"] = str(CACHE_HOME)


def inherited_settings() -> dict[str, str]:
    values = read_env_file(REPO_ROOT / ".env")
    values.update(os.environ)
    return {k: values[k] for k in INHERITED if values.get(k)}


_HANDED_OUT: set[int] = set()  # ports free_port gave: the kernel may offer one again


def free_port() -> int:
    """A host port free now and not handed out before by this process (a project takes
    several before any is bound: the same one twice makes its `.env` refused)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def poll(check: Callable[[], Any], timeout: float = 30.0, interval: float = 0.1) -> Any:
    """Call `check` until it returns a truthy value or stops raising; fail at the deadline."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
            last = result
        except Exception as exc:
            last = exc
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s; last: {last!r}")


@dataclass
class Project:
    """One isolated devstack project under test."""

    name: str
    env_file: Path
    project_dir: Path
    client: docker.DockerClient
    values: dict[str, str] = field(default_factory=dict)

    @property
    def postgres_port(self) -> int:
        return int(self.values["DEVSTACK_POSTGRES_PORT"])

    @property
    def redis_port(self) -> int:
        return int(self.values["DEVSTACK_REDIS_PORT"])

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.values['DEVSTACK_API_PORT']}"

    @property
    def dsn(self) -> str:
        v = self.values
        return (
            f"postgresql://{v['POSTGRES_USER']}:{v['POSTGRES_PASSWORD']}"
            f"@127.0.0.1:{self.postgres_port}/{v['POSTGRES_DB']}"
        )

    def write_env(self, **changes: str) -> None:
        self.values.update(changes)
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in self.values.items()))

    def command(
        self, *args: str, env_extra: dict[str, str] | None = None
    ) -> tuple[list[str], dict[str, str]]:
        """`python -m devstack ARGS` for this project, and an environment free of the
        developer's own devstack settings: for `run` and for tests that need a Popen."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(OWN_PREFIXES)}
        env.update(NO_COLOR="1", COLUMNS="200", **(env_extra or {}))
        command = [sys.executable, "-m", "devstack", "--project-dir", str(self.project_dir)]
        return [*command, "--env-file", str(self.env_file), *args], env

    def run(
        self,
        *args: str,
        check: bool = True,
        timeout: float = 900,
        env_extra: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """`python -m devstack ARGS` for this project; output captured as text."""
        command, env = self.command(*args, env_extra=env_extra)
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(
                f"devstack {' '.join(args)} exited {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result

    def services(self) -> tuple[str, ...]:
        """The services this project's stack.py declares (with its .env)."""
        from devstack.declare.settings import load_settings
        from devstack.declare.stackfile import declare

        settings = load_settings(self.project_dir, self.env_file, environ={})
        return declare(settings).active().names  # the groups turned on

    def container(self, service: str) -> Any:
        return self.client.containers.get(f"{self.name}-{service}")

    def resources(self) -> dict[str, list[str]]:
        query = {"label": [f"devstack.project={self.name}"]}
        return {
            "containers": [c.name for c in self.client.containers.list(all=True, filters=query)],
            "networks": [n.name for n in self.client.networks.list(filters=query)],
            "volumes": [v.name for v in self.client.volumes.list(filters=query)],
        }

    def remove_everything(self) -> None:
        """Remove what carries this project's label (and only that), and the API image it
        built from a scratch copy of the repo (the repo's own image stays: it is a cache)."""
        remove_project(self.client, self.name)
        if self.project_dir != REPO_ROOT:
            from devstack.converge.build import image_tag
            from devstack.declare.settings import load_settings
            from devstack.declare.stackfile import declare as declare_stack

            settings = load_settings(self.project_dir, self.env_file, environ={})
            builds = {s.build for s in declare_stack(settings).services if s.build}
            for build in builds:
                with contextlib.suppress(docker.errors.APIError):
                    self.client.api.remove_image(image_tag(build), noprune=True)


def remove_project(client: docker.DockerClient, name: str) -> None:
    query = {"label": [f"devstack.project={name}"]}
    for container in client.containers.list(all=True, filters=query):
        container.remove(force=True, v=True)  # with its anonymous volumes
    for network in client.networks.list(filters=query):
        network.remove()
    for volume in client.volumes.list(filters=query):
        volume.remove(force=True)
    forget_build_users(client, lambda project: project == name)


def forget_build_users(client: docker.DockerClient, whose: Callable[[str], bool]) -> None:
    """Untag the records of the test projects `whose` picks as users of a build's reuse tags
    (devstack.converge.build.users_repository): left, they would keep a developer's own
    `down --volumes` from removing its reuse tags."""
    for image in client.api.images():  # a listing only: no inspect of each image
        for reference in image.get("RepoTags") or ():
            repository, _, project = reference.rpartition(":")
            if repository.endswith(USERS_SUFFIX) and whose(project):
                with contextlib.suppress(docker.errors.NotFound):
                    client.api.remove_image(reference, noprune=True)


@pytest.fixture(scope="session", autouse=True)
def leftovers_of_earlier_runs(docker_client: docker.DockerClient) -> Iterator[None]:
    """A killed run (a session ends, CI starts) leaves its test projects behind: remove them.
    Only test projects whose pytest process is gone are touched (not a concurrent run's)."""
    query = {"label": ["devstack.project"]}
    # sparse: no inspect per container, which fails when a concurrent run removes one meanwhile
    listed = docker_client.containers.list(all=True, filters=query, sparse=True)
    names = {c.attrs["Labels"]["devstack.project"] for c in listed}
    names |= {
        n.attrs["Labels"]["devstack.project"] for n in docker_client.networks.list(filters=query)
    }
    names |= {
        v.attrs["Labels"]["devstack.project"] for v in docker_client.volumes.list(filters=query)
    }

    def dead(name: str) -> bool:
        pid = name.removeprefix(TEST_PREFIX).partition("-")[0]
        alive = pid.isdigit() and Path(f"/proc/{pid}").exists()
        return name.startswith(TEST_PREFIX) and not alive

    for name in sorted(filter(dead, names)):
        remove_project(docker_client, name)
    forget_build_users(docker_client, dead)  # a project with nothing else left
    for cache in CACHE_HOME.parent.glob(f"{TEST_PREFIX}cache-*"):
        if not Path(f"/proc/{cache.name.rpartition('-')[2]}").exists():
            shutil.rmtree(cache, ignore_errors=True)
    yield
    shutil.rmtree(CACHE_HOME, ignore_errors=True)


def stack_project(
    project_dir: Path, client: docker.DockerClient, stack: str = "", **settings: str
) -> Project:
    """A project of its own stack file (`stack`, else the one in `project_dir`), named as a
    test project, its settings file `<project_dir>.env` (beside the directory) holding
    `settings`. The caller removes it (`remove_everything`)."""
    if stack:
        project_dir.mkdir(parents=True, exist_ok=True)
        (project_dir / "stack.py").write_text(stack)
    name = f"{TEST_PREFIX}{os.getpid()}-{secrets.token_hex(3)}"
    project = Project(name, project_dir.parent / f"{project_dir.name}.env", project_dir, client)
    project.write_env(DEVSTACK_PROJECT=name, **settings)
    return project


def new_project(
    base: Path, client: docker.DockerClient, project_dir: Path = REPO_ROOT, **settings: str
) -> Project:
    name = f"{TEST_PREFIX}{os.getpid()}-{secrets.token_hex(3)}"
    values = {
        "DEVSTACK_PROJECT": name,
        "DEVSTACK_POSTGRES_PORT": str(free_port()),
        "DEVSTACK_REDIS_PORT": str(free_port()),
        "DEVSTACK_API_PORT": str(free_port()),
        "DEVSTACK_PROMETHEUS_PORT": str(free_port()),
        "DEVSTACK_GRAFANA_PORT": str(free_port()),
        "POSTGRES_USER": "tester",
        "POSTGRES_PASSWORD": SESSION_PASSWORD,
        "POSTGRES_DB": "testdb",
        **inherited_settings(),
        **settings,
    }
    base.mkdir(parents=True, exist_ok=True)
    project = Project(name, base / ".env", project_dir, client)
    project.write_env(**values)
    return project


@pytest.fixture
def make_project(
    tmp_path: Path, docker_client: docker.DockerClient
) -> Iterator[Callable[..., Project]]:
    """A factory of isolated projects, all removed (by label) when the test ends."""
    made: list[Project] = []

    def make(project_dir: Path = REPO_ROOT, **settings: str) -> Project:
        project = new_project(tmp_path / f"p{len(made)}", docker_client, project_dir, **settings)
        made.append(project)
        return project

    yield make
    for project in made:
        project.remove_everything()


@pytest.fixture
def project(make_project: Callable[..., Project]) -> Project:
    return make_project()


@pytest.fixture(scope="module")
def running(
    tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient
) -> Iterator[Project]:
    """One stack brought up once for a module's read-only checks."""
    project = new_project(
        tmp_path_factory.mktemp("stack"),
        docker_client,
        DEVSTACK_HEALTH_INTERVAL="1",
        AI_AGENTS_LOG_LEVEL="debug",
    )
    try:
        project.run("up", "--quiet")
        yield project
    finally:
        project.remove_everything()
