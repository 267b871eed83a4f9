"""What `status` shows: plain rows built from the stack and a snapshot (no Docker calls here)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from devstack.endpoint import Endpoint
from devstack.observed import Observed, ObservedContainer
from devstack.plan import explain_drift
from devstack.spec import Service, Stack


@dataclass(frozen=True)
class StatusRow:
    service: str
    container: str
    state: str  # running | exited | created | missing | ...
    health: str
    ports: tuple[str, ...]  # URLs
    image: str
    uptime: str
    drift: str  # why the container no longer matches .env; "" when it does


def service_url(service: Service | None, host_ip: str, host_port: int) -> str:
    """A URL for a published port; Postgres DSNs carry the user, never the password."""
    host = "127.0.0.1" if host_ip in {"", "0.0.0.0"} else host_ip
    host = f"[{host}]" if ":" in host else host
    kind = service.probe.kind if service and service.probe else ""
    if kind == "postgres" and service and service.probe:
        probe = service.probe
        return f"postgresql://{probe.user}:***@{host}:{host_port}/{probe.database}"
    if kind == "redis":
        return f"redis://{host}:{host_port}"
    if kind == "http":
        return f"http://{host}:{host_port}"
    return f"{host}:{host_port}"


def status_rows(
    stack: Stack, observed: Observed, probed: frozenset[str] = frozenset()
) -> list[StatusRow]:
    """One row per service of the stack, then one per orphan container of the project.

    `probed`: services devstack has just seen ready itself; while Docker's first health check
    is still pending (it runs one interval after start) their health reads "ready (probed)"."""
    rows = []
    for service in stack.services:
        container = observed.containers.get(service.name)
        row = _row(service.name, service, container)
        if row.health == "starting" and service.name in probed:
            row = replace(row, health="ready (probed)")
        rows.append(row)
    known = {s.name for s in stack.services}
    for name, container in sorted(observed.containers.items()):
        if name not in known:
            rows.append(_row(name, None, container))
    return rows


def _row(name: str, service: Service | None, container: ObservedContainer | None) -> StatusRow:
    if container is None:
        return StatusRow(name, "", "missing", "", (), service.image if service else "", "", "")
    if service is None:
        drift = "orphan: not in the stack; `down` removes it"
    elif container.config_hash != service.config_hash():
        drift = explain_drift(service, container)
    else:
        drift = ""
    urls = tuple(service_url(service, p.host_ip, p.host_port) for p in container.ports)
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
