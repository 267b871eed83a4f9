"""A Docker engine on another host (issue 21, part 2), the pure layers: which endpoints are
remote, where probes, URLs and the free-port check go, what is refused there, and how ssh://
reaches the engine. tests/integration/test_remote_engine.py runs the same against a real
second engine in a network namespace."""

from __future__ import annotations

import socket
from dataclasses import replace
from pathlib import Path

import pytest

from devstack import usecases
from devstack.converge.plan import plan_up
from devstack.declare.checks import HttpGet, PostgresLogin, RedisPing
from devstack.declare.settings import load_settings
from devstack.declare.spec import Port, Service
from devstack.engine.docker import DockerEngine
from devstack.engine.endpoint import Endpoint, remote_host_of, resolve_endpoint
from devstack.errors import ConfigError, ResourceConflict

from .fake_engine import FakeEngine
from .helpers import SEED_STACK, declare_stack, observed

REMOTE = Endpoint("DOCKER_HOST", "tcp://192.0.2.7:2375")


@pytest.mark.parametrize(
    ("host", "remote"),
    [
        ("tcp://10.200.0.2:2375", "10.200.0.2"),
        ("ssh://me@build-box", "build-box"),
        ("ssh://me@build-box:2222", "build-box"),
        ("tcp://[fd00::5]:2376", "fd00::5"),
        ("https://docker.example.com:2376", "docker.example.com"),
        ("unix:///var/run/docker.sock", ""),
        ("npipe:////./pipe/docker_engine", ""),
        ("tcp://127.0.0.1:2375", ""),
        ("tcp://localhost:2375", ""),
        ("ssh://me@localhost", ""),
        ("tcp://[::1]:2375", ""),
    ],
)
def test_which_endpoints_are_another_host(host: str, remote: str) -> None:
    assert remote_host_of(host) == remote
    assert Endpoint("DOCKER_HOST", host).remote_host == remote


def test_ssh_docker_host_resolves_and_goes_through_the_openssh_client(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    monkeypatch.setenv("DOCKER_HOST", "ssh://deploy@build-box:2222")
    endpoint = resolve_endpoint()
    assert (endpoint.source, endpoint.remote_host, endpoint.is_ssh) == (
        "DOCKER_HOST",
        "build-box",
        True,
    )
    kwargs = DockerEngine(endpoint=endpoint)._client_kwargs()
    assert kwargs["base_url"] == "ssh://deploy@build-box:2222"
    assert kwargs["use_ssh_client"] is True  # the user's ssh config and agent, no paramiko


def test_ssh_without_an_ssh_command_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    engine = DockerEngine(endpoint=Endpoint("DOCKER_HOST", "ssh://me@box"))
    with pytest.raises(Exception, match="no ssh command") as raised:
        engine._client_kwargs()
    assert "openssh-client" in str(getattr(raised.value, "hint", ""))


def remote_settings(tmp_path: Path, text: str = "", engine_host: str = "192.0.2.7") -> object:
    env_file = tmp_path / ".env"
    env_file.write_text(f"DEVSTACK_PROJECT=demo\nPOSTGRES_PASSWORD=a-real-one\n{text}")
    (tmp_path / "stack.py").write_text(SEED_STACK.read_text())
    return load_settings(tmp_path, env_file, environ={}, engine_host=engine_host)


def test_remote_engine_binds_everywhere_and_probes_its_host(tmp_path: Path) -> None:
    settings = remote_settings(tmp_path)
    assert settings.bind_address == "0.0.0.0"  # type: ignore[attr-defined]
    stack = declare_stack(settings)  # type: ignore[arg-type]
    checks = {s.name: s.readiness for s in stack.services}
    postgres, redis, api = checks["postgres"], checks["redis"], checks["api"]
    assert isinstance(postgres, PostgresLogin) and postgres.host == "192.0.2.7"
    assert isinstance(redis, RedisPing) and redis.host == "192.0.2.7"
    assert isinstance(api, HttpGet) and api.host == "192.0.2.7"
    port = stack.service("api").ports[0]
    assert port.format_url("0.0.0.0", port.host_port) == f"http://192.0.2.7:{port.host_port}"
    assert settings.probe_host == "192.0.2.7"  # type: ignore[attr-defined]


def test_a_local_engine_keeps_loopback(tmp_path: Path) -> None:
    settings = remote_settings(tmp_path, engine_host="")
    stack = declare_stack(settings)  # type: ignore[arg-type]
    postgres = stack.service("postgres").readiness
    assert isinstance(postgres, PostgresLogin) and postgres.host == "127.0.0.1"
    port = stack.service("api").ports[0]
    assert port.host_ip == "127.0.0.1"
    assert port.format_url() == f"http://127.0.0.1:{port.host_port}"


def test_an_explicit_address_of_the_engine_is_probed_there(tmp_path: Path) -> None:
    settings = remote_settings(tmp_path, "DEVSTACK_BIND_ADDRESS=10.9.8.7\n")
    stack = declare_stack(settings)  # type: ignore[arg-type]
    redis = stack.service("redis").readiness
    assert isinstance(redis, RedisPing) and redis.host == "10.9.8.7"


def test_the_remote_loopback_is_refused_with_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"loopback of the Docker engine's host 192\.0\.2\.7"
    ) as e:
        remote_settings(tmp_path, "DEVSTACK_BIND_ADDRESS=127.0.0.1\n")
    assert "unset it" in (e.value.hint or "")


def test_example_secrets_are_refused_on_a_remote_engine(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("DEVSTACK_PROJECT=demo\n")
    (tmp_path / "stack.py").write_text(SEED_STACK.read_text())
    settings = load_settings(tmp_path, env_file, environ={}, engine_host="192.0.2.7")
    with pytest.raises(ConfigError, match=r"engine on 192\.0\.2\.7 publishes the stack"):
        usecases.project_of(settings)


def test_only_the_example_secrets_of_services_turned_on_are_refused(tmp_path: Path) -> None:
    """GRAFANA_ADMIN_PASSWORD, used by the monitoring group only, refused every remote `up`
    without that group; with the group on it is refused."""
    env_file = tmp_path / ".env"
    env_file.write_text("DEVSTACK_PROJECT=demo\nPOSTGRES_PASSWORD=a-real-one\n")
    repo = Path(__file__).parents[2]
    for name in ("stack.py", ".env.example", "monitoring/dashboard.json"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text((repo / name).read_text())
    settings = load_settings(tmp_path, env_file, environ={}, engine_host="192.0.2.7")
    assert "grafana" not in usecases.project_of(settings).stack.names
    with pytest.raises(ConfigError, match=r"example GRAFANA_ADMIN_PASSWORD"):
        usecases.project_of(settings.with_groups({"monitoring"}))


def test_dev_mode_is_refused_on_a_remote_engine_in_one_line(tmp_path: Path) -> None:
    settings = remote_settings(tmp_path, "DEVSTACK_DEV_MODE=true\n")
    project = usecases.project_of(settings)  # type: ignore[arg-type]
    engine = FakeEngine(endpoint=REMOTE)
    with pytest.raises(ConfigError) as raised:
        usecases.up(project, engine, lambda event: None)
    assert "cannot see this machine's files" in raised.value.message
    assert "\n" not in raised.value.message
    assert "DEVSTACK_DEV_MODE=false" in (raised.value.hint or "")
    assert not engine.calls  # refused before anything changed


def test_without_dev_mode_nothing_is_mounted_and_up_goes_on(tmp_path: Path) -> None:
    settings = remote_settings(tmp_path, "DEVSTACK_DEV_MODE=false\n")
    project = usecases.project_of(settings)  # type: ignore[arg-type]
    usecases.refuse_host_paths(FakeEngine(endpoint=REMOTE), project.stack.services, False)


def listening() -> tuple[socket.socket, int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    return server, int(server.getsockname()[1])


def test_remote_port_check_connects_where_the_port_is_reached(tmp_path: Path) -> None:
    """Nothing binds on the engine's host from here: a port that answers there is taken."""
    server, port = listening()
    with server:
        settings = remote_settings(tmp_path, f"DEVSTACK_API_PORT={port}\n")
        stack = declare_stack(settings)  # type: ignore[arg-type]

        # the API's port reached on this machine's loopback, as if it were the engine's host;
        # the other services publish nothing (other stacks may listen on their defaults here)
        def ports(s: Service) -> tuple[Port, ...]:
            return tuple(replace(p, reach="127.0.0.1") for p in s.ports if s.name == "api")

        stack = replace(stack, services=tuple(replace(s, ports=ports(s)) for s in stack.services))
        plan = plan_up(stack, observed(stack))
        with pytest.raises(ResourceConflict) as raised:
            usecases.check_ports(FakeEngine(endpoint=REMOTE), plan, observed(stack))
    message = raised.value.message
    assert f"host port {port} (DEVSTACK_API_PORT) on the Docker engine's host 192.0.2.7" in message
    assert "another process (not a container)" in message


def test_remote_port_check_names_the_engines_container(tmp_path: Path) -> None:
    settings = remote_settings(tmp_path)
    stack = declare_stack(settings)  # type: ignore[arg-type]
    engine = FakeEngine(endpoint=REMOTE)

    def holder(port: int) -> str | None:
        return "container other-redis of devstack project other" if port == 6379 else None

    engine.port_holder = holder  # type: ignore[method-assign]
    plan = plan_up(stack, observed(stack))
    with pytest.raises(ResourceConflict, match="in use by container other-redis"):
        usecases.check_ports(engine, plan, observed(stack))
