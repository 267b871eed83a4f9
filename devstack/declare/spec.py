"""The vocabulary of a stack declaration: pure, immutable data with no Docker calls.

A `Service` carries everything the other layers need (image or build, command, environment,
ports with the `.env` key that sets each, mounts, Docker healthcheck, readiness check,
dependencies with a condition, exec shortcuts, printed links) and what it offers the rest
of the tool by capability (a `Database`, a `KeyValueStore`, `Migrations`: capabilities.py).
Concrete stacks are declared by each project's own `stack.py` with `devstack.recipes`; the tool
names no service."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

from devstack.declare.capabilities import Database, KeyValueStore, MetricsStore, Migrations
from devstack.declare.checks import ReadinessCheck


@dataclass(frozen=True)
class Healthcheck:
    """Docker's own healthcheck (what `docker ps` shows); durations in seconds."""

    test: tuple[str, ...]
    interval: float
    timeout: float
    retries: int
    start_period: float = 0.0
    # checks during the start period (Docker 25+, API 1.44; older engines ignore it): `docker
    # ps` says healthy about this long after the service is, not a whole interval later
    start_interval: float = 0.0


@dataclass(frozen=True)
class Port:
    """A published port; `url` is a template with {host} and {port} (what `status` shows)."""

    host_ip: str
    host_port: int
    container_port: int
    setting: str = field(default="", compare=False)  # the .env key that chooses host_port
    url: str = field(default="{host}:{port}", compare=False)
    # where this machine reaches it (a remote engine's host for a wildcard bind); "": derived
    reach: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not 1 <= self.container_port <= 65535:
            where = f"{self.setting}: " if self.setting else ""
            raise ValueError(f"{where}container port {self.container_port} is not a port (1-65535)")

    @property
    def probe_host(self) -> str:
        """Where this machine connects to the port: `reach`, else the bind address (loopback
        for a wildcard)."""
        if self.reach:
            return self.reach
        wildcard = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}
        return wildcard.get(self.host_ip, self.host_ip)

    def format_url(self, host_ip: str | None = None, host_port: int | None = None) -> str:
        """This port's URL, for the declared or an observed binding."""
        host = host_ip if host_ip is not None else self.host_ip
        host = (self.reach or "127.0.0.1") if host in {"", "0.0.0.0", "::"} else host
        host = f"[{host}]" if ":" in host else host
        return self.url.format(host=host, port=host_port or self.host_port)


@dataclass(frozen=True)
class Mount:
    """A named volume, a host path or a memory file system mounted into the container."""

    source: str  # a volume name or an absolute host path ("" for tmpfs)
    target: str
    kind: str  # "volume" | "bind" | "tmpfs"
    read_only: bool = False


@dataclass(frozen=True)
class InitTemplate:
    """The service initialises the empty volume mounted at `target` on its first start (e.g.
    Postgres' initdb). That first initialisation is kept as a template in the user's cache
    (devstack.converge.templates) and a new volume starts as a copy of it, with nothing run
    again. The template's inputs are the image, the environment, the command, the user, the
    files and the bind mounts' content: a change to any of them makes a new one (a password
    too: templates are never shared across passwords). The service's health check must pass
    only once the initialisation is complete (then the template is taken, after a graceful
    stop)."""

    target: str


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


SERVICE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")  # like a project's name
ENVIRONMENT_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")  # what Kubernetes accepts
DEFAULT_CPU_SHARES = 1024  # Docker's default CPU weight of a container


@dataclass(frozen=True)
class Held:
    """A service whose container starts with its first dependencies and holds before running
    its program until devstack releases it (`devstack/programs/gate.py`, mounted at `gate`,
    wraps the command): the interpreter start and the `preload` imports overlap the
    dependencies' start.

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
    unavailable: str = ""  # why it cannot run in this configuration (said instead, exit 2)

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
class File:
    """A file written into the container before it starts (a configuration the image reads):
    its content is part of the configuration, so a change recreates the container."""

    path: str  # absolute, in the container
    content: str = field(repr=False)
    mode: int = 0o644


@dataclass(frozen=True)
class Metrics:
    """A Prometheus metrics endpoint inside the container, scraped by the stack's Prometheus
    (its job is the service's name). `family` says what `top` reads there: "http" (requests
    and their latency) or "tasks" (a task queue's throughput)."""

    port: int
    path: str = "/metrics"
    family: str = ""

    def __post_init__(self) -> None:
        if not 1 <= self.port <= 65535:
            raise ValueError(f"metrics port {self.port} is not a port (1-65535)")
        if not self.path.startswith("/") or any(c.isspace() for c in self.path):
            raise ValueError(f"metrics path {self.path!r} must start with / and hold no spaces")
        if self.family not in METRIC_FAMILIES:
            raise ValueError(
                f"metrics family {self.family!r} is not one of {', '.join(METRIC_FAMILIES)}"
            )


METRIC_FAMILIES = ("", "http", "tasks")


@dataclass(frozen=True)
class ClusterHints:
    """What a cluster needs that Docker works out by itself (read by the Kubernetes export).

    `uid`: the numeric user the image's process runs as (Kubernetes' `runAsNonRoot` needs a
    number, and the volume's `fsGroup` follows it); `environment`: variables set on a cluster
    only (e.g. a data directory below a volume's root, which may hold `lost+found`);
    `writable`: directories the program writes outside its volumes (empty directories under a
    read-only root filesystem; /tmp always is one); `secret_files`: secret variables the image
    also reads from a file named by `NAME_FILE` (the official images' convention)."""

    uid: int | None = None
    environment: tuple[tuple[str, str], ...] = ()
    writable: tuple[str, ...] = ()
    secret_files: tuple[str, ...] = ()


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
    init: bool = False  # Docker's init as PID 1: forwards signals, reaps zombies
    # holds nothing a stop must flush (its work is redone elsewhere, e.g. a task queue's
    # worker with late acks, or a stateless server): `down` kills and removes it at once,
    # side by side, instead of a graceful stop; not part of the container's configuration
    disposable: bool = False
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
    group: str = ""  # an optional group, off unless turned on (`up --with GROUP`)
    # when its image is neither here nor pullable, `up` says so and brings up the rest (nothing
    # may depend on it)
    optional: bool = False
    files: tuple[File, ...] = ()  # written into the container before it starts
    init_template: InitTemplate | None = None  # a new volume starts as a copy of a template
    metrics: Metrics | None = None  # what the stack's Prometheus scrapes
    # capabilities: what the rest of the tool may ask of this service
    database: Database | None = None
    key_value: KeyValueStore | None = None
    migrations: Migrations | None = None
    key_value_dbs: tuple[int, ...] = ()  # the numbered Redis databases this service uses
    metrics_store: MetricsStore | None = None

    def __post_init__(self) -> None:
        if not SERVICE_NAME.fullmatch(self.name):
            raise ValueError(
                f"service name {self.name!r}: use lowercase letters, digits, '-' and '_' (at "
                "most 63): it names the container and is its host name on the stack's network"
            )
        for key, _ in self.environment:
            if not ENVIRONMENT_NAME.fullmatch(key):
                raise ValueError(
                    f"{self.name}: environment variable {key!r}: use letters, digits, '_', '.' "
                    "and '-', not starting with a digit"
                )

    @property
    def metrics_family(self) -> str:
        """What its metrics say ("http", "tasks"), "" when it declares none."""
        return self.metrics.family if self.metrics else ""

    @property
    def init_volume(self) -> str:
        """The named volume its init template fills ("" when it declares none)."""
        target = self.init_template.target if self.init_template else None
        return next(
            (m.source for m in self.mounts if m.kind == "volume" and m.target == target), ""
        )

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
            "mounts": [vars(m) for m in self.mounts],
            "healthcheck": vars(self.healthcheck) if self.healthcheck else None,
            "stop_signal": self.stop_signal,
            "user": self.user,
            "working_dir": self.working_dir,
        }
        if self.init:  # only when set: existing containers keep their hash
            items["init"] = True
        items.update({f"file {f.path}": (f.content, f.mode) for f in self.files})
        items.update({f"env {k}": v for k, v in self.environment})
        return {k: _digest(v) for k, v in items.items()}

    def config_hash(self) -> str:
        """One digest of `config_fields`: a container with another hash is recreated.
        Computed once per service (the plan and the status both ask)."""
        cached: str | None = self.__dict__.get("_config_hash")
        if cached is None:
            cached = _digest(self.config_fields())
            object.__setattr__(self, "_config_hash", cached)
        return cached


def _check_init_template(service: Service, template: InitTemplate) -> None:
    """An init template needs the named volume it initialises and a health check that
    says when the initialisation is complete."""
    if not service.init_volume or template.target.rstrip("/") == "":
        raise ValueError(f"{service.name}: its init template needs a volume at {template.target}")
    if service.healthcheck is None:
        raise ValueError(f"{service.name}: its init template needs a health check")


# what json.dumps(value, sort_keys=True, default=str) uses, made once (it makes one per call)
_ENCODER = json.JSONEncoder(sort_keys=True, default=str)


def _digest(value: object) -> str:
    blob = _ENCODER.encode(value).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


@dataclass(frozen=True)
class Stack:
    """A project's network, volumes and services."""

    project: str
    network: str
    volumes: tuple[str, ...]
    services: tuple[Service, ...]
    # declared secrets (variable name, value): masked, and a Secret in the Kubernetes export
    secrets: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    example_secrets: tuple[str, ...] = ()  # those still at their example default
    groups_on: frozenset[str] = frozenset()  # the optional groups turned on
    image_settings: tuple[tuple[str, str], ...] = ()  # (image, the .env key that chose it)

    def __post_init__(self) -> None:
        names = [s.name for s in self.services]
        if len(set(names)) != len(names):
            twice = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"service {twice[0]!r} is declared twice")
        for service in self.services:
            if service.held is not None and service.readiness is None:
                # its release is re-sent until its check passes
                raise ValueError(f"{service.name} is held but has no readiness check")
            if service.init_template is not None:
                _check_init_template(service, service.init_template)
            for dependency in service.depends_on:
                if dependency.service not in names:
                    raise ValueError(f"{service.name} depends on undeclared {dependency.service}")
                if self.service(dependency.service).optional:
                    raise ValueError(
                        f"{service.name} depends on {dependency.service}, which is optional "
                        "(up goes on without it when its image cannot be had)"
                    )
        try:
            self._order()
        except CycleError as exc:
            raise ValueError(f"dependency cycle among {exc.args[1]}") from None

    def is_on(self, service: Service) -> bool:
        """Whether `service` is in no group or in a group turned on."""
        return not service.group or service.group in self.groups_on

    def active(self) -> Stack:
        """The services `up` brings up: those in no group or in a group turned on. A service
        that is on but depends on one that is off is refused (Compose's profiles trap)."""
        on = [s for s in self.services if self.is_on(s)]
        names = {s.name for s in on}
        for service in on:
            for dependency in service.dependency_names:
                if dependency not in names:
                    group = self.service(dependency).group
                    raise ValueError(
                        f"{service.name} depends on {dependency}, which is in group "
                        f"{group!r} (off): turn it on with `up --with {group}` or "
                        f"DEVSTACK_WITH={group}"
                    )
        return self.with_services(on)

    def with_services(self, services: Sequence[Service]) -> Stack:
        """A copy with only `services`, the volumes they mount and the secrets they use (a
        secret's value appears in one's environment, command or files)."""
        mounted = {m.source for s in services for m in s.mounts}
        volumes = tuple(v for v in self.volumes if v in mounted)
        texts = [
            text
            for s in services
            for text in (*(v for _, v in s.environment), *s.command, *(f.content for f in s.files))
        ]
        secrets = tuple((n, v) for n, v in self.secrets if any(v in text for text in texts))
        used = {n for n, _ in secrets}
        return replace(
            self,
            services=tuple(services),
            volumes=volumes,
            secrets=secrets,
            example_secrets=tuple(n for n in self.example_secrets if n in used),
        )

    @property
    def groups(self) -> tuple[str, ...]:
        """Every optional group the stack declares."""
        return tuple(sorted({s.group for s in self.services if s.group}))

    def app_database(self) -> tuple[Service, Database]:
        """The service offering the application's database (LookupError if none)."""
        offered = [(s, s.database) for s in self.services if s.database is not None]
        marked = [(s, d) for s, d in offered if d.application] if len(offered) > 1 else offered
        if len(marked) != 1:
            names = ", ".join(s.name for s, _ in offered) or "none"
            raise LookupError(
                f"the stack declares {len(offered)} databases ({names}); "
                + ("mark one application=True" if offered else "declare one with recipes.postgres")
            )
        return marked[0]

    def key_value_store(self) -> tuple[Service, KeyValueStore]:
        """The service offering a key-value store (LookupError if none)."""
        for service in self.services:
            if service.key_value is not None:
                return service, service.key_value
        raise LookupError("the stack declares no Redis (recipes.redis)")

    def key_value_dbs_used(self) -> frozenset[int]:
        """The numbered Redis databases the services declare they use."""
        return frozenset(n for s in self.services for n in s.key_value_dbs)

    def metrics_store(self) -> tuple[Service, MetricsStore]:
        """The service offering a Prometheus server (LookupError if none)."""
        for service in self.services:
            if service.metrics_store is not None:
                return service, service.metrics_store
        raise LookupError("the stack declares no Prometheus (recipes.prometheus)")

    def migrations_job(self) -> tuple[Service, Migrations]:
        """The service that migrates the application's database (LookupError if none)."""
        for service in self.services:
            if service.migrations is not None:
                return service, service.migrations
        raise LookupError("the stack declares no migrations job (recipes.alembic_job)")

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
