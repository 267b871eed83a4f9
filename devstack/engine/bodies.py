"""The Engine API's container create body for a declared service, built from the declaration
alone (no docker-py import, no engine call)."""

from __future__ import annotations

from typing import Any

from devstack.declare import labels
from devstack.declare.spec import Service, Stack

NANO = 1_000_000_000


def container_body(
    stack: Stack, service: Service, one_off: str = "", isolated: bool = False, publish: bool = False
) -> tuple[str, dict[str, Any]]:
    """The container's name and the Engine API's create body for `service` (what docker-py's
    create_container/create_host_config would send; tests/unit/test_container_body.py checks
    it against them), so creating containers needs no docker-py import. `isolated`: on the
    stack's network without the service's name (none of the stack's services reaches it);
    `publish`: a one-off publishes the service's ports too (host port 0: one the engine
    picks)."""
    ports = service.ports if publish or not one_off else ()
    container_labels = labels.container_labels(
        stack.project, service.name, service.config_fields(), service.config_hash()
    )
    name = stack.container_name(service.name)
    if one_off:
        container_labels[labels.ONE_OFF] = one_off
        name = f"{name}-{one_off}"
    bindings: dict[str, list[dict[str, str]]] = {}
    for port in ports:
        bindings.setdefault(f"{port.container_port}/tcp", []).append(
            {"HostIp": port.host_ip, "HostPort": str(port.host_port or "")}
        )
    held = None if one_off else service.held
    host_config = {
        "NetworkMode": "default",
        **({"CpuShares": held.cpu_shares} if held and held.cpu_shares else {}),
        **({"Init": True} if service.init else {}),
        "PortBindings": bindings,
        "Mounts": [
            {
                "Target": m.target,
                "Source": m.source or None,
                "Type": m.kind,
                "ReadOnly": m.read_only,
            }
            for m in service.mounts
        ],
    }
    body: dict[str, Any] = {
        "Image": service.image,
        "Cmd": list(service.command) or None,
        "Env": [f"{key}={value}" for key, value in service.environment],
        "Labels": container_labels,
        "ExposedPorts": {key: {} for key in bindings},
        "HostConfig": host_config,
        "NetworkingConfig": {
            "EndpointsConfig": {stack.network: {} if isolated else {"Aliases": [service.name]}}
        },
        "StopSignal": service.stop_signal,
        "User": service.user or None,
        "WorkingDir": service.working_dir or None,
    }
    if service.healthcheck:
        hc = service.healthcheck
        body["Healthcheck"] = {
            "Test": list(hc.test),
            "Interval": int(hc.interval * NANO),
            "Timeout": int(hc.timeout * NANO),
            "Retries": hc.retries,
            "StartPeriod": int(hc.start_period * NANO),
            # API 1.44+ (Docker 25+); older engines ignore the field (docker-py drops it)
            **({"StartInterval": int(hc.start_interval * NANO)} if hc.start_interval else {}),
        }
    return name, {key: value for key, value in body.items() if value is not None}
