"""What exists: one snapshot of a project's resources, parsed from the engine's sparse listings
into plain data that the plan and the status table read."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from devstack.declare import labels

_HEALTH = re.compile(r"\((healthy|unhealthy|health: starting)\)")


@dataclass(frozen=True)
class ObservedPort:
    host_ip: str
    host_port: int
    container_port: int


@dataclass(frozen=True)
class ObservedContainer:
    id: str
    name: str
    service: str
    state: str  # created | running | paused | restarting | exited | dead
    health: str  # healthy | unhealthy | starting | "" (no healthcheck / not running)
    status: str  # Docker's human text, e.g. "Up 3 minutes (healthy)"
    image: str
    image_id: str
    config_hash: str
    config_fields: dict[str, str] = field(default_factory=dict, compare=False)
    ports: tuple[ObservedPort, ...] = ()
    networks: dict[str, str] = field(default_factory=dict, compare=False)  # name -> network id
    # this start of the container: its network endpoints' ids, which Docker makes anew at every
    # start (a restart, a restart policy's); "" when stopped or on no network
    start_mark: str = field(default="", compare=False)

    @property
    def running(self) -> bool:
        """Whether the container runs."""
        return self.state == "running"

    @property
    def completed(self) -> bool:
        """Whether the container ran to completion with exit code 0."""
        return self.state == "exited" and self.status.startswith("Exited (0)")

    @property
    def uptime(self) -> str:
        """'3 minutes' for a running container, '' otherwise."""
        if not self.running or not self.status.startswith("Up "):
            return ""
        return _HEALTH.sub("", self.status[3:]).strip()


@dataclass(frozen=True)
class ImageUse:
    """An image that the project's containers run but the stack no longer wants."""

    built_by_devstack: bool
    users: frozenset[str]  # names of every container (any project) created from it


@dataclass(frozen=True)
class Observed:
    """One snapshot of a project's resources."""

    project: str
    containers: dict[str, ObservedContainer]  # by service name
    network_ids: dict[str, str] = field(default_factory=dict)  # name -> id
    volumes: frozenset[str] = frozenset()
    image_ids: dict[str, str] = field(default_factory=dict)  # image reference -> id
    replaced_images: dict[str, ImageUse] = field(default_factory=dict)  # reference -> use
    # containers beside the services: a `run` or an init template's first start that an
    # interrupted command left, the pytest plugin's scratch server; `down` removes them
    one_offs: tuple[str, ...] = ()

    @property
    def networks(self) -> frozenset[str]:
        """The names of the project's networks."""
        return frozenset(self.network_ids)

    @property
    def empty(self) -> bool:
        return not (self.containers or self.networks or self.volumes or self.one_offs)


def parse_container(row: dict[str, Any]) -> ObservedContainer:
    """One row of `GET /containers/json` (docker-py `api.containers()`)."""
    row_labels: dict[str, str] = row.get("Labels") or {}
    status = row.get("Status", "")
    match = _HEALTH.search(status)
    health = match.group(1).removeprefix("health: ") if match else ""
    try:
        fields = json.loads(row_labels.get(labels.CONFIG_FIELDS, "{}"))
    except ValueError:
        fields = {}
    ports = tuple(
        ObservedPort(p.get("IP", ""), int(p["PublicPort"]), int(p["PrivatePort"]))
        for p in row.get("Ports") or []
        if p.get("PublicPort")
    )
    names = row.get("Names") or [""]
    attached = ((row.get("NetworkSettings") or {}).get("Networks")) or {}
    return ObservedContainer(
        id=row["Id"],
        name=names[0].lstrip("/"),
        service=row_labels.get(labels.SERVICE, ""),
        state=row.get("State", ""),
        health=health,
        status=status,
        image=row.get("Image", ""),
        image_id=row.get("ImageID", ""),
        config_hash=row_labels.get(labels.CONFIG_HASH, ""),
        config_fields=fields,
        ports=tuple(sorted(set(ports), key=lambda p: (p.container_port, p.host_ip))),
        networks={name: str(net.get("NetworkID", "")) for name, net in attached.items()},
        start_mark=",".join(
            sorted(str(n["EndpointID"]) for n in attached.values() if n.get("EndpointID"))
        ),
    )


def parse_snapshot(
    project: str,
    containers: list[dict[str, Any]],
    networks: list[dict[str, Any]],
    volumes: list[dict[str, Any]],
    images: list[dict[str, Any]] | None = None,
    replaced_images: dict[str, ImageUse] | None = None,
) -> Observed:
    """Assemble an Observed from the engine's list responses (already filtered by label)."""
    parsed = [
        parse_container(row)
        for row in containers
        if labels.ONE_OFF not in (row.get("Labels") or {})  # a `migrate`/`test` run
    ]
    one_offs = sorted(
        (row.get("Names") or ["/?"])[0].lstrip("/")
        for row in containers
        if labels.ONE_OFF in (row.get("Labels") or {})
    )
    image_ids = {tag: row["Id"] for row in images or [] for tag in row.get("RepoTags") or []}
    return Observed(
        project=project,
        containers={c.service or c.name: c for c in parsed},
        network_ids={n["Name"]: str(n.get("Id", "")) for n in networks},
        volumes=frozenset(v["Name"] for v in volumes),
        image_ids=image_ids,
        replaced_images=replaced_images or {},
        one_offs=tuple(one_offs),
    )


def container_addresses(containers: list[dict[str, Any]], network: str) -> dict[str, str]:
    """IP address -> container name, for the rows of `GET /containers/json` attached to
    `network` (IPv4 and IPv6 addresses both)."""
    found: dict[str, str] = {}
    for row in containers:
        attached = ((row.get("NetworkSettings") or {}).get("Networks") or {}).get(network) or {}
        name = (row.get("Names") or ["/?"])[0].lstrip("/")
        for key in ("IPAddress", "GlobalIPv6Address"):
            if attached.get(key):
                found[str(attached[key])] = name
    return found
