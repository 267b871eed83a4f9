"""The vocabulary of a stack declaration: pure, immutable data with no Docker calls.

A `Service` carries everything the other layers need (image or build, command, environment,
ports with the `.env` key that sets each, mounts, Docker healthcheck, readiness check,
dependencies with a condition, exec shortcuts, printed links). The concrete stack is declared
once, in `devstack.declaration`; no other module names a concrete service."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

from devstack.checks import ReadinessCheck


@dataclass(frozen=True)
class Healthcheck:
    """Docker's own healthcheck (what `docker ps` shows); durations in seconds."""

    test: tuple[str, ...]
    interval: float
    timeout: float
    retries: int
    start_period: float = 0.0


@dataclass(frozen=True)
class Port:
    """A published port; `url` is a template with {host} and {port} (what `status` shows)."""

    host_ip: str
    host_port: int
    container_port: int
    setting: str = field(default="", compare=False)  # the .env key that chooses host_port
    url: str = field(default="{host}:{port}", compare=False)

    def format_url(self, host_ip: str | None = None, host_port: int | None = None) -> str:
        """This port's URL, for the declared or an observed binding."""
        host = host_ip if host_ip is not None else self.host_ip
        host = "127.0.0.1" if host in {"", "0.0.0.0"} else host
        host = f"[{host}]" if ":" in host else host
        return self.url.format(host=host, port=host_port or self.host_port)


@dataclass(frozen=True)
class Mount:
    """A named volume or a host path mounted into the container."""

    source: str  # a volume name or an absolute host path
    target: str
    kind: str  # "volume" | "bind"
    read_only: bool = False


@dataclass(frozen=True)
class ReusedStage:
    """A Dockerfile stage whose image from an earlier build the next build may start from,
    passed as build arg `arg`. `reads`: the context paths the stage (and those it is built
    from) copies; while their files are unchanged, the base the earlier build used is passed
    again, so the stage is a cached no-op. Which image is passed only decides how much work
    the build does, never what the image holds: the Dockerfile must make the same files from
    any of them as from scratch (see its builder stage)."""

    stage: str
    arg: str
    reads: tuple[str, ...]


@dataclass(frozen=True)
class Build:
    """How to build an image: the build inputs that the build hash covers."""

    context: Path
    dockerfile: str = "Dockerfile"
    target: str = "runtime"
    args: tuple[tuple[str, str], ...] = ()
    ca_bundle: Path | None = None
    repository: str = "devstack/image"  # tagged <repository>:<hash of the inputs>
    reuse: tuple[ReusedStage, ...] = ()  # not inputs: see ReusedStage


class Condition(StrEnum):
    """What a dependency must reach before its dependent proceeds."""

    READY = "ready"  # its readiness check passes
    COMPLETED = "completed"  # a one-shot job exited 0


@dataclass(frozen=True)
class Dependency:
    """`service` must reach `condition`; `before_start=False` lets the dependent start at the
    same time (it tolerates the dependency coming up later) while still being declared ready
    only after the dependency is."""

    service: str
    condition: Condition = Condition.READY
    before_start: bool = True


DEFAULT_CPU_SHARES = 1024  # Docker's default CPU weight of a container


@dataclass(frozen=True)
class Held:
    """A service whose container starts with its first dependencies and holds before running
    its program until devstack releases it (`devstack/gate.py`, mounted at `gate`, wraps the
    command): the interpreter start and the `preload` imports overlap the dependencies' start.

    A new container starts once its dependencies' containers were started (Postgres' start
    call goes first); the release (signal `signal`) is sent once its `before_start`
    dependencies are satisfied and re-sent until it is ready, so the ordering those
    dependencies declare still holds for its program.
    A container released once (the gate's `marker` exists) is not held again on restart."""

    preload: tuple[str, ...] = ()
    # its CPU weight while held (Docker's cpu_shares, default 1024; 0: unchanged): its imports
    # yield the CPU to the dependencies it overlaps (Postgres' initdb); the release restores
    # the default
    cpu_shares: int = 0
    gate: str = "/opt/devstack/gate.py"  # where the gate script is mounted in the container
    signal: str = "SIGUSR2"
    marker: str = "/tmp/devstack-released"

    def wrap(self, command: Sequence[str]) -> tuple[str, ...]:
        """`command` run through the gate (a python program runs in the gate's process)."""
        options = ("--preload", ",".join(self.preload), "--marker", self.marker)
        return ("python", self.gate, *options, "--signal", self.signal, "--", *command)


@dataclass(frozen=True)
class Shortcut:
    """A command word (`psql`) that runs `prefix + (args or default)` in the service.

    By default it runs in the service's running container (`exec`). A `one_off` shortcut runs
    in a new container of the service's image and configuration instead (with `mounts` and
    `environment` added, as the invoking user when `as_invoking_user`), after `up` of
    `up_first`: `migrate` and `test` work on a stopped stack."""

    name: str
    help: str
    prefix: tuple[str, ...] = ()
    default: tuple[str, ...] = ()
    example: str = ""
    one_off: bool = False
    mounts: tuple[Mount, ...] = ()
    environment: tuple[tuple[str, str], ...] = ()
    as_invoking_user: bool = False
    up_first: tuple[str, ...] = ()

    def argv(self, args: Sequence[str]) -> list[str]:
        """The command line to run for the user's `args`."""
        return [*self.prefix, *(args or self.default)]


@dataclass(frozen=True)
class Link:
    """A URL that `up` prints: `template` formatted with {url} (the first port's URL)."""

    template: str = "{url}"

    def format(self, port: Port) -> str:
        """The link for `port`'s declared binding."""
        return self.template.format(url=port.format_url())


@dataclass(frozen=True)
class ClusterHints:
    """What a cluster needs that Docker works out by itself (read by the Kubernetes export).

    `uid`: the numeric user the image's process runs as (Kubernetes' `runAsNonRoot` needs a
    number, and the volume's `fsGroup` follows it); `environment`: variables set on a cluster
    only (e.g. a data directory below a volume's root, which may hold `lost+found`)."""

    uid: int | None = None
    environment: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Service:
    """One declared service."""

    name: str
    image: str
    title: str = ""  # how `up` names it in the links it prints
    environment: tuple[tuple[str, str], ...] = ()
    command: tuple[str, ...] = ()
    ports: tuple[Port, ...] = ()
    mounts: tuple[Mount, ...] = ()
    healthcheck: Healthcheck | None = None
    readiness: ReadinessCheck | None = None
    # "Is the process alive?" with no dependency involved (a cluster restarts it when not)
    liveness: ReadinessCheck | None = None
    depends_on: tuple[Dependency, ...] = ()
    build: Build | None = None
    stop_signal: str | None = None
    one_shot: bool = False  # a job that runs to completion (e.g. migrations) on every `up`
    shortcuts: tuple[Shortcut, ...] = ()
    links: tuple[Link, ...] = ()
    user: str = ""
    working_dir: str = ""
    # where a dev server writes the one-line summary of the code error it is stuck on
    code_error_file: str = ""
    # a one-shot service's dry run (e.g. `migrate check`): its first line explains `--plan`
    plan_command: tuple[str, ...] = ()
    cluster: ClusterHints = field(default_factory=ClusterHints)
    # starts early and holds until released (its command is wrapped by `held.wrap`)
    held: Held | None = None

    @property
    def dependency_names(self) -> tuple[str, ...]:
        """The names of the services this one depends on."""
        return tuple(d.service for d in self.depends_on)

    def config_fields(self) -> dict[str, str]:
        """A fingerprint per configuration item (values hashed: no secrets in labels).

        The image is compared by reference and id in the plan, not here, so `status` can tell
        drift without resolving a build's content-addressed tag."""
        items: dict[str, object] = {
            "command": self.command,
            "ports": [(p.host_ip, p.host_port, p.container_port) for p in self.ports],
            "mounts": [asdict(m) for m in self.mounts],
            "healthcheck": asdict(self.healthcheck) if self.healthcheck else None,
            "stop_signal": self.stop_signal,
            "user": self.user,
            "working_dir": self.working_dir,
        }
        items.update({f"env {k}": v for k, v in self.environment})
        return {k: _digest(v) for k, v in items.items()}

    def config_hash(self) -> str:
        """One digest of `config_fields`: a container with another hash is recreated."""
        return _digest(self.config_fields())


def _digest(value: object) -> str:
    blob = json.dumps(value, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


@dataclass(frozen=True)
class Stack:
    """A project's network, volumes and services."""

    project: str
    network: str
    volumes: tuple[str, ...]
    services: tuple[Service, ...]

    def __post_init__(self) -> None:
        names = [s.name for s in self.services]
        for service in self.services:
            if service.held is not None and service.readiness is None:
                # its release is re-sent until its check passes
                raise ValueError(f"{service.name} is held but has no readiness check")
            for dependency in service.depends_on:
                if dependency.service not in names:
                    raise ValueError(f"{service.name} depends on undeclared {dependency.service}")
        try:
            self._order()
        except CycleError as exc:
            raise ValueError(f"dependency cycle among {exc.args[1]}") from None

    @property
    def names(self) -> tuple[str, ...]:
        """Service names in declaration order."""
        return tuple(s.name for s in self.services)

    def service(self, name: str) -> Service:
        """The service called `name` (KeyError if none)."""
        for service in self.services:
            if service.name == name:
                return service
        raise KeyError(name)

    def with_images(self, images: dict[Build, str]) -> Stack:
        """A copy whose services with a build run the image tagged for that build."""
        services = tuple(
            replace(s, image=images[s.build]) if s.build in images else s for s in self.services
        )
        return replace(self, services=services)

    def container_name(self, service: str) -> str:
        """`<project>-<service>`."""
        return f"{self.project}-{service}"

    def _order(self) -> list[str]:
        sorter = TopologicalSorter({s.name: s.dependency_names for s in self.services})
        rank = {name: index for index, name in enumerate(self.names)}
        order: list[str] = []
        sorter.prepare()
        while sorter.is_active():
            ready = sorted(sorter.get_ready(), key=rank.__getitem__)
            order.extend(ready)
            sorter.done(*ready)
        return order

    def start_order(self, names: Sequence[str] | None = None) -> list[str]:
        """`names` (default: all) in dependency order, dependencies first."""
        wanted = set(self.names if names is None else names)
        return [n for n in self._order() if n in wanted]

    def with_dependencies(self, names: Sequence[str]) -> list[str]:
        """`names` plus everything they depend on, in start order."""
        wanted: set[str] = set()
        pending = list(names)
        while pending:
            name = pending.pop()
            if name not in wanted:
                wanted.add(name)
                pending.extend(self.service(name).dependency_names)
        return self.start_order(sorted(wanted))

    def dependents(self, names: Sequence[str]) -> list[str]:
        """`names` plus everything that depends on them, in stop order (dependents first)."""
        wanted = set(names)
        for name in self._order():
            if wanted & set(self.service(name).dependency_names):
                wanted.add(name)
        return list(reversed(self.start_order(sorted(wanted))))

    def published_ports(self) -> list[tuple[Port, Service]]:
        """Every published port with its service, in declaration order."""
        return [(port, service) for service in self.services for port in service.ports]

    def shortcut(self, name: str) -> tuple[Service, Shortcut] | None:
        """The service that declares the exec shortcut `name`, and the shortcut."""
        for service in self.services:
            for shortcut in service.shortcuts:
                if shortcut.name == name:
                    return service, shortcut
        return None
