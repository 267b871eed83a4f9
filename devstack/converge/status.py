"""What `status` shows: plain rows built from the stack and a snapshot (no Docker calls here)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING

from devstack.converge.observed import Observed, ObservedContainer
from devstack.declare.spec import Port, Service, Stack

if TYPE_CHECKING:  # an annotation only: which engine is the engine layer's business
    from devstack.engine.endpoint import Endpoint

PROBED = "ready (probed)"  # devstack's own check passed; Docker's first check is pending
# a service with no Docker health check: what its own readiness check says now
READY, NOT_READY = "ready", "not ready"


@dataclass(frozen=True)
class StatusRow:
    """One line of `status`."""

    service: str
    container: str
    state: str  # running | exited | created | missing | ...
    health: str
    ports: tuple[str, ...]  # URLs
    image: str
    uptime: str
    drift: str  # why the container no longer matches .env; "" when it does
    code_error: str = ""  # the dev server's one-line summary while the code is broken


def port_urls(service: Service | None, container: ObservedContainer) -> tuple[str, ...]:
    """The container's published ports as the URLs its service declares (passwords masked)."""
    declared = {p.container_port: p for p in service.ports} if service else {}
    urls = []
    for observed_port in container.ports:
        port = declared.get(observed_port.container_port) or Port("", 0, 0)
        urls.append(port.format_url(observed_port.host_ip, observed_port.host_port))
    return tuple(urls)


def unwatched(stack: Stack, observed: Observed) -> list[str]:
    """The running services Docker watches no health of (none declared) that have a
    readiness check of devstack's own (not a one-shot job's): `status` runs it."""
    return [
        service.name
        for service in stack.services
        if (container := observed.containers.get(service.name)) is not None
        and container.running
        and not container.health
        and service.readiness is not None
        and not service.readiness.waits_for_exit
    ]


def status_rows(
    stack: Stack,
    observed: Observed,
    probed: frozenset[str] = frozenset(),
    code_errors: dict[str, str] | None = None,
    checked: Mapping[str, bool] | None = None,
) -> list[StatusRow]:
    """One row per service of the stack, then one per orphan container of the project.

    `probed`: services devstack has just seen ready itself; while Docker's first health check
    is still pending (it runs one interval after start) their health reads "ready (probed)".
    `checked`: what the readiness check of each `unwatched` service said ("ready", "not
    ready")."""
    rows = []
    for service in stack.services:
        container = observed.containers.get(service.name)
        row = _row(service.name, service, container)
        if row.health == "starting" and service.name in probed:
            row = replace(row, health=PROBED)
        if checked and service.name in checked and not row.health:
            row = replace(row, health=READY if checked[service.name] else NOT_READY)
        if code_errors and service.name in code_errors:
            row = replace(row, health="code error", code_error=code_errors[service.name])
        rows.append(row)
    known = set(stack.names)
    for name, container in sorted(observed.containers.items()):
        if name not in known:
            rows.append(_row(name, None, container))
    return rows


def _row(name: str, service: Service | None, container: ObservedContainer | None) -> StatusRow:
    """A row for a declared service, an orphan container, or a missing container."""
    if container is None:
        image = "" if service is None else service.image
        if service is not None and service.build is not None:
            image = f"{service.build.repository}:<built by up>"
        return StatusRow(name, "", "missing", "", (), image, "", "")
    if service is None:
        drift = "orphan: not in the stack; `down` removes it"
    elif container.config_hash != service.config_hash():
        from devstack.converge.plan import explain_drift  # only for a drifted container

        drift = explain_drift(service, container)
    else:
        drift = ""
    urls = port_urls(service, container)
    return StatusRow(
        service=name,
        container=container.name,
        state=container.state,
        health=container.health,
        ports=urls,
        image=container.image,
        uptime=container.uptime,
        drift=drift,
    )


def rows_as_json(
    project: str, rows: list[StatusRow], engine: Endpoint | None = None
) -> dict[str, object]:
    """`status --json`: the project, the engine (when known) and one object per row."""
    data: dict[str, object] = {"project": project}
    if engine:
        data["engine"] = engine.as_json()
    data["services"] = [asdict(r) for r in rows]
    return data
