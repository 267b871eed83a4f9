"""The local stand-in images built by scripts/local-images.sh keep the contracts devstack needs.

Real engine, real containers: the Postgres stand-in honours POSTGRES_USER / POSTGRES_PASSWORD /
POSTGRES_DB over TCP with password auth, survives `docker restart`; the Redis stand-in answers
on 0.0.0.0 and takes `redis-server --appendonly yes`; every image says honestly what it is.
Every container carries the label devstack.test=local-images and is removed afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import asyncpg
import docker
import pytest
import redis
from docker.models.containers import Container

POSTGRES_IMAGE = "devstack-local/postgres:17-trixie"
REDIS_IMAGE = "devstack-local/redis:7-bookworm"
PYTHON_IMAGE = "devstack-local/python:3.11-bookworm"
ALL_IMAGES = (
    "devstack-local/debian:bookworm",
    "devstack-local/debian:trixie",
    POSTGRES_IMAGE,
    REDIS_IMAGE,
    PYTHON_IMAGE,
)
TEST_LABEL = {"devstack.test": "local-images"}
DEADLINE_S = 60.0
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

T = TypeVar("T")


def _remove_labelled(client: docker.DockerClient) -> None:
    for container in client.containers.list(
        all=True, filters={"label": "devstack.test=local-images"}
    ):
        container.remove(force=True, v=True)


@pytest.fixture(scope="module")
def client(docker_client: docker.DockerClient) -> Iterator[docker.DockerClient]:
    """The engine, with leftovers of earlier runs gone and the stand-in images present."""
    _remove_labelled(docker_client)
    missing = [name for name in ALL_IMAGES if not docker_client.images.list(name=name)]
    if missing:
        message = f"local stand-in images missing: {missing}; run `bash scripts/local-images.sh`"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    yield docker_client
    _remove_labelled(docker_client)


@pytest.fixture
def run(client: docker.DockerClient) -> Iterator[Callable[..., Container]]:
    """Start a labelled container (ports published on 127.0.0.1, engine-chosen) and remove it."""
    started: list[Container] = []

    def _run(image: str, **kwargs: Any) -> Container:
        name = f"devstack-test-local-images-{uuid.uuid4().hex[:8]}"
        try:
            container = client.containers.run(
                image, name=name, detach=True, labels=TEST_LABEL, **kwargs
            )
        except docker.errors.APIError:
            # `run` = create + start: a failed start leaves the created container behind
            for leftover in client.containers.list(all=True, filters={"name": name}):
                if leftover.name == name:
                    leftover.remove(force=True, v=True)
            raise
        started.append(container)
        return container

    yield _run
    for container in started:
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True, v=True)


def host_port(container: Container, port: str) -> int:
    container.reload()
    bindings = container.attrs["NetworkSettings"]["Ports"][port]
    return int(bindings[0]["HostPort"])


def wait_for(
    container: Container,
    attempt: Callable[[], T],
    transient: tuple[type[BaseException], ...],
    what: str,
) -> T:
    """Retry `attempt` until it succeeds; fail at the deadline or as soon as the container exits."""
    deadline = time.monotonic() + DEADLINE_S
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            return attempt()
        except transient as exc:
            last = exc
        container.reload()
        if container.status in {"exited", "dead"}:
            logs = container.logs(tail=40).decode(errors="replace")
            pytest.fail(f"{what}: container exited ({container.attrs['State']})\n{logs}")
        time.sleep(0.1)
    logs = container.logs(tail=40).decode(errors="replace")
    pytest.fail(f"{what}: not ready after {DEADLINE_S}s (last error: {last!r})\n{logs}")


PG_TRANSIENT = (
    OSError,  # refused / reset while only the init server (unix socket) runs
    TimeoutError,
    asyncpg.CannotConnectNowError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.InterfaceError,
)


def pg_query(port: int, user: str, password: str, database: str, sql: str) -> list[Any]:
    async def _query() -> list[Any]:
        conn = await asyncpg.connect(
            host="127.0.0.1",
            port=port,
            user=user,
            password=password,
            database=database,
            timeout=5,
            ssl=False,
        )
        try:
            return list(await conn.fetchrow(sql))
        finally:
            await conn.close()

    return asyncio.run(_query())


def exec_ok(container: Container, cmd: list[str]) -> str:
    result = container.exec_run(cmd)
    output = result.output.decode(errors="replace")
    assert result.exit_code == 0, f"{cmd} exited {result.exit_code}: {output}"
    return output


@pytest.mark.parametrize("image", ALL_IMAGES)
def test_images_describe_themselves_honestly(client: docker.DockerClient, image: str) -> None:
    labels = client.images.get(image).labels
    description = labels.get("org.opencontainers.image.description", "")
    assert description.startswith("Local stand-in for "), description
    assert "not the official Docker image" in description
    assert len(labels.get("devstack.recipe-hash", "")) == 64


def test_postgres_contract(run: Callable[..., Container]) -> None:
    user, password, database = "devstack_t", "s3cret 'quoted' pw", "appdb_t"
    container = run(
        POSTGRES_IMAGE,
        environment={
            "POSTGRES_USER": user,
            "POSTGRES_PASSWORD": password,
            "POSTGRES_DB": database,
        },
        ports={"5432/tcp": ("127.0.0.1", None)},
    )
    port = host_port(container, "5432/tcp")

    row = wait_for(
        container,
        lambda: pg_query(
            port,
            user,
            password,
            database,
            "SELECT current_user, current_database(), current_setting('server_version_num')",
        ),
        PG_TRANSIENT,
        "postgres over TCP",
    )
    assert row[0] == user
    assert row[1] == database
    assert row[2].startswith("17")

    with pytest.raises(asyncpg.InvalidPasswordError):
        pg_query(port, user, "wrong-password", database, "SELECT 1")

    # the official image's tooling and process model
    exec_ok(container, ["pg_isready", "-h", "127.0.0.1", "-U", user, "-d", database])
    exec_ok(container, ["sh", "-c", "command -v psql pg_isready"])
    status = exec_ok(container, ["cat", "/proc/1/status"])
    uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
    assert uid_line.split()[1] == exec_ok(container, ["id", "-u", "postgres"]).strip()
    config = container.attrs["Config"]
    assert config["StopSignal"] == "SIGINT"
    assert "PGDATA=/var/lib/postgresql/data" in config["Env"]

    # init ran in single-user mode: nothing listened, so no TCP client saw a half-made db
    init_logs, marker, _ = (
        container.logs().decode(errors="replace").partition("initialization complete")
    )
    assert marker, init_logs
    assert "listening on" not in init_logs

    # `docker restart`: SIGINT (fast shutdown), then the existing cluster starts without init
    container.restart(timeout=20)
    port = host_port(container, "5432/tcp")  # an engine-chosen host port changes on restart
    row = wait_for(
        container,
        lambda: pg_query(port, user, password, database, "SELECT current_database()"),
        PG_TRANSIENT,
        "postgres after restart",
    )
    assert row == [database]
    assert "skipping initialization" in container.logs().decode(errors="replace")


def test_postgres_refuses_to_init_without_password(
    client: docker.DockerClient, run: Callable[..., Container]
) -> None:
    container = run(POSTGRES_IMAGE)
    result = container.wait(timeout=DEADLINE_S)
    assert result["StatusCode"] != 0
    assert "POSTGRES_PASSWORD" in container.logs().decode(errors="replace")


def test_redis_contract(run: Callable[..., Container]) -> None:
    container = run(
        REDIS_IMAGE,
        command=["redis-server", "--appendonly", "yes"],
        ports={"6379/tcp": ("127.0.0.1", None)},
    )
    port = host_port(container, "6379/tcp")
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5, socket_connect_timeout=5)
    try:
        assert wait_for(
            container, client.ping, (redis.ConnectionError, redis.TimeoutError), "redis"
        )
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("bind") == {"bind": "0.0.0.0"}
        assert client.config_get("dir") == {"dir": "/data"}
    finally:
        client.close()

    assert exec_ok(container, ["redis-cli", "ping"]).strip() == "PONG"
    status = exec_ok(container, ["cat", "/proc/1/status"])
    uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
    assert uid_line.split()[1] == exec_ok(container, ["id", "-u", "redis"]).strip() != "0"


def test_python_image_has_venv_and_curl(run: Callable[..., Container]) -> None:
    container = run(
        PYTHON_IMAGE,
        command=[
            "sh",
            "-c",
            "python3 -m venv /tmp/v && /tmp/v/bin/python -c 'import ssl, sys; print(sys.version)'"
            " && curl --version",
        ],
    )
    result = container.wait(timeout=DEADLINE_S)
    logs = container.logs().decode(errors="replace")
    assert result["StatusCode"] == 0, logs
    assert logs.startswith("3.11"), logs
    assert "curl" in logs
