"""The create body devstack sends equals what docker-py's helpers would build (the oracle)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import docker
import docker.types
import pytest

from devstack.declare.spec import Service, Stack
from devstack.engine.bodies import NANO, container_body
from devstack.usecases.scratch import scratch_service
from tests.unit.helpers import declare_stack

from .helpers import settings


def docker_py_config(
    stack: Stack, service: Service, one_off: str, isolated: bool = False, publish: bool = False
) -> dict[str, Any]:
    """What docker-py 7's APIClient.create_container would send (no engine is contacted:
    an explicit API version skips negotiation)."""
    api = docker.APIClient(version="1.41")
    ports = service.ports if publish or not one_off else ()
    hc = service.healthcheck
    _, ours = container_body(stack, service, one_off, isolated, publish)
    return dict(
        api.create_container_config(
            service.image,
            list(service.command) or None,
            environment=dict(service.environment),
            labels=ours["Labels"],  # labels are devstack's own (tests/unit/test_plan.py)
            ports=[p.container_port for p in ports],
            host_config=api.create_host_config(
                cpu_shares=service.held.cpu_shares if service.held and not one_off else None,
                init=service.init or None,
                port_bindings={p.container_port: (p.host_ip, p.host_port or None) for p in ports},
                mounts=[
                    docker.types.Mount(
                        m.target, m.source or None, type=m.kind, read_only=m.read_only
                    )
                    for m in service.mounts
                ],
            ),
            networking_config=api.create_networking_config(
                {
                    stack.network: api.create_endpoint_config(
                        aliases=None if isolated else [service.name]
                    )
                }
            ),
            healthcheck=None
            if hc is None
            else {
                "test": list(hc.test),
                "interval": int(hc.interval * NANO),
                "timeout": int(hc.timeout * NANO),
                "retries": hc.retries,
                "start_period": int(hc.start_period * NANO),
            },
            stop_signal=service.stop_signal,
            user=service.user or None,
            working_dir=service.working_dir or None,
            detach=True,
        )
    )


@pytest.mark.parametrize("dev", [True, False])
@pytest.mark.parametrize(("one_off", "isolated"), [("", False), ("run-1", False), ("x", True)])
def test_every_declared_service_matches_docker_py(
    tmp_path: Path, dev: bool, one_off: str, isolated: bool
) -> None:
    stack = declare_stack(settings(tmp_path, f"DEVSTACK_DEV_MODE={dev}\n"))
    for service in stack.services:
        name, ours = container_body(stack, service, one_off, isolated)
        theirs = docker_py_config(stack, service, one_off, isolated)
        if service.healthcheck:  # docker-py drops start_interval (API 1.44): ours carries it
            assert ours["Healthcheck"].pop("StartInterval") == int(
                service.healthcheck.start_interval * 1e9
            )
        meaningful = {k: v for k, v in theirs.items() if v not in (None, False, [], {}, "")}
        assert {k: v for k, v in ours.items() if k in meaningful} == meaningful, service.name
        extra = {k: v for k, v in ours.items() if k not in meaningful}
        assert all(v in ([], {}, None) for v in extra.values()), (service.name, extra)
        assert name == stack.container_name(service.name) + (f"-{one_off}" if one_off else "")


def test_healthchecks_run_every_second_until_the_first_passes(tmp_path: Path) -> None:
    """Issue 22 item 9: on Docker 25+ `docker ps` says healthy about a second after the
    service is, not a whole interval later (older engines ignore the field)."""
    stack = declare_stack(settings(tmp_path))
    for service in stack.services:
        if service.healthcheck:
            _, body = container_body(stack, service)
            assert body["Healthcheck"]["StartInterval"] == 1_000_000_000, service.name


def test_the_scratch_server_matches_docker_py(tmp_path: Path) -> None:
    """The per-test clones' server (devstack.usecases.scratch): a one-off that publishes its
    port on one the engine picks, its volume a tmpfs."""
    stack = declare_stack(settings(tmp_path))
    service, database = stack.app_database()
    scratch = scratch_service(service, database)
    _, ours = container_body(stack, scratch, "scratch-x", True, publish=True)
    theirs = docker_py_config(stack, scratch, "scratch-x", True, publish=True)
    meaningful = {k: v for k, v in theirs.items() if v not in (None, False, [], {}, "")}
    assert {k: v for k, v in ours.items() if k in meaningful} == meaningful
    host = ours["HostConfig"]
    assert host["PortBindings"] == {"5432/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]}
    assert [(m["Type"], m["Source"]) for m in host["Mounts"]] == [("tmpfs", None)]
    assert ours["Cmd"] == list(database.throwaway_command)
    assert "Healthcheck" not in ours
    # without `publish` a one-off publishes nothing (it would take the service's port)
    _, hidden = container_body(stack, scratch, "scratch-x", True)
    assert hidden["HostConfig"]["PortBindings"] == {}


def test_init_matches_docker_py_and_turning_it_on_or_off_recreates(tmp_path: Path) -> None:
    stack = declare_stack(settings(tmp_path))
    plain = stack.services[0]
    with_init = replace(plain, init=True)
    _, ours = container_body(stack, with_init)
    assert ours["HostConfig"]["Init"] is True
    assert docker_py_config(stack, with_init, "")["HostConfig"]["Init"] is True
    assert "Init" not in container_body(stack, plain)[1]["HostConfig"]
    assert with_init.config_hash() != plain.config_hash()
    assert replace(with_init, init=False).config_hash() == plain.config_hash()
