"""`up`'s check, before anything changes, that every host port it will publish is free: on
this machine by binding it, on another host's engine by asking the engine and connecting."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import TYPE_CHECKING

from devstack.converge.engine_protocol import Engine
from devstack.converge.observed import Observed, ObservedContainer
from devstack.declare.spec import Port
from devstack.errors import ResourceConflict
from devstack.usecases.threads import each_at_once

if TYPE_CHECKING:
    from devstack.converge.plan import Action, Plan

OTHER_PROCESS = "another process (not a container)"


def check_ports(engine: Engine, plan: Plan, observed: Observed) -> None:
    """Before anything changes: every host port a container will take must be free. On this
    machine's engine: a bind here. On another host's (nothing binds there from here): no
    container of that engine publishes it, and nothing answers a connection to it there."""
    from devstack.converge.plan import Action, Kind

    ours = {p.host_port for c in observed.containers.values() if c.running for p in c.ports}
    wanted = [
        port
        for op in plan.of_kind(Kind.CONTAINER)
        if op.action is not Action.KEEP
        and op.service is not None
        # an interrupted `up` may have left its start call in flight (the databases start
        # while the image builds): Docker binds the ports before it lists the container
        # running; starting it again is harmless, and Docker itself refuses a taken port
        and not _in_flight(op.action, observed.containers.get(op.service.name))
        for port in op.service.ports
        if port.host_port not in ours
    ]
    remote = engine.endpoint.remote_host
    if remote:
        _check_remote_ports(engine, remote, wanted)
        return
    for port in wanted:
        if not _port_free(port.host_ip, port.host_port):
            raise ResourceConflict(
                f"host port {port.host_port} ({port.setting}) is already in use by "
                f"{engine.port_holder(port.host_port) or OTHER_PROCESS}",
                hint=f"stop it, or set {port.setting} in .env to a free port",
            )


def _in_flight(action: Action, current: ObservedContainer | None) -> bool:
    """Whether an interrupted `up` may have left this container's start call in flight."""
    from devstack.converge.plan import Action

    return action is Action.START and current is not None and current.state == "created"


def _check_remote_ports(engine: Engine, remote: str, ports: Sequence[Port]) -> None:
    """The engine's own containers first (it names them), then a TCP connect to each port
    where this machine reaches it: an answer means another process listens there."""
    for port in ports:
        holder = engine.port_holder(port.host_port)
        if holder:
            raise ResourceConflict(
                f"host port {port.host_port} ({port.setting}) on the Docker engine's host "
                f"{remote} is already in use by {holder}",
                hint=f"stop it, or set {port.setting} in .env to a free port",
            )
    answered = each_at_once(lambda p: (p, _answers(p.probe_host, p.host_port)), list(ports))
    for port, answers in answered:
        if answers:
            raise ResourceConflict(
                f"host port {port.host_port} ({port.setting}) on the Docker engine's host "
                f"{remote} is already in use by {OTHER_PROCESS}: {port.probe_host}:"
                f"{port.host_port} accepts connections",
                hint=f"stop it, or set {port.setting} in .env to a free port",
            )


def _answers(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether something accepts a TCP connection at host:port (refused, unreachable or
    silent: no; a silent firewall costs `timeout`, and Docker still refuses a taken port)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _port_free(host_ip: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host_ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host_ip, port))
        except OSError:
            return False
    return True
