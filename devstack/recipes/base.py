"""The plain recipes: any container, published ports, volumes, readiness checks, the stack.

A recipe is a function that returns one `Service` (pure data): what a Compose service block
says, plus how devstack knows it is ready. The service recipes (`postgres`, `redis`, the
Python ones) are built from these."""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace

from devstack.declare.checks import (
    Completed,
    ExecCommand,
    HttpGet,
    LogLine,
    ReadinessCheck,
    TcpConnect,
)
from devstack.declare.settings import Env
from devstack.declare.spec import (
    Condition,
    Dependency,
    Healthcheck,
    Link,
    Mount,
    Port,
    Service,
    Shortcut,
    Stack,
)
from devstack.recipes.scrape import with_scrape_configs

HEALTH_START_INTERVAL = 1.0  # seconds between Docker's checks until the first one passes


def publish(
    env: Env, key: str, default: int, container_port: int, url: str = "{host}:{port}"
) -> Port:
    """A port published on the host: `key` in `.env` chooses the host port (`default`);
    `url` is what `status` and `up` show ({host} and {port} filled in)."""
    host_port = env.port(key, default)
    bind, reach = env.settings.bind_address, env.settings.probe_host
    return Port(bind, host_port, container_port, key, url=url, reach=reach)


def volume(env: Env, name: str, target: str) -> Mount:
    """The project's named volume `<project>_<name>` at `target` (kept by `down`)."""
    return Mount(env.volume(name), target, "volume")


def bind(env: Env, path: str, target: str, read_only: bool = True) -> Mount:
    """`path` of the project (relative to its root) mounted at `target`."""
    return Mount(str(env.project_dir / path), target, "bind", read_only=read_only)


def health_test(argv: Sequence[str]) -> tuple[str, ...]:
    """A health command in Docker's form: `CMD` first unless it is there (or `CMD-SHELL`);
    Docker ignores a test without one, silently."""
    argv = tuple(argv)
    return argv if argv[:1] in (("CMD",), ("CMD-SHELL",)) else ("CMD", *argv)


def health_probe(test: Sequence[str]) -> ExecCommand:
    """Docker's health command (`CMD ...` or `CMD-SHELL ...`) as a readiness check of
    devstack's own: run at once and often, not after Docker's first interval."""
    kind, *argv = test
    return ExecCommand(tuple(argv) if kind == "CMD" else ("sh", "-c", *argv))


def healthcheck(env: Env, test: Sequence[str]) -> Healthcheck:
    """Docker's health check with the stack's interval/timeout/retries; failures while the
    service starts do not count for as long as `up` would wait for it (a slow first start on
    a loaded machine is not "unhealthy")."""
    s = env.settings
    return Healthcheck(
        tuple(test),
        s.health_interval,
        s.health_timeout,
        s.health_retries,
        start_period=s.timeout,
        start_interval=HEALTH_START_INTERVAL,
    )


def strings(value: Sequence[str], what: str, service: str) -> tuple[str, ...]:
    """`value` (a command's arguments, module or queue names) as a tuple. One string is
    refused: it is a sequence too, and would give one argument per character."""
    if isinstance(value, str):
        try:
            suggested = shlex.split(value)
        except ValueError:  # unbalanced quotes
            suggested = [value]
        raise ValueError(
            f"{service}: {what} is one string; give its arguments as a list: {suggested!r}"
        )
    return tuple(value)


# --- readiness checks ------------------------------------------------------------------------
def http(port: Port, path: str = "/") -> HttpGet:
    """Ready when `GET path` on the published `port` answers 200."""
    return HttpGet(port.probe_host, port.host_port, path, container_port=port.container_port)


def tcp(port: Port) -> TcpConnect:
    """Ready when the service inside accepts a connection on `port` (checked in the
    container: a published port accepts even when nothing listens behind it)."""
    return TcpConnect(port.container_port)


def exec_check(*argv: str) -> ExecCommand:
    """Ready when `argv`, run inside the container, exits 0."""
    return ExecCommand(tuple(argv))


def log_line(pattern: str) -> LogLine:
    """Ready once the container's output has a line matching the regular expression."""
    return LogLine(pattern)


def completed() -> Completed:
    """A one-shot job: ready once it exited 0 (a non-zero exit fails `up`)."""
    return Completed()


# --- dependencies ----------------------------------------------------------------------------
def ready(service: Service | str, before_start: bool = True) -> Dependency:
    """Depend on `service` being ready (`before_start=False`: start together, ready after)."""
    return Dependency(_name(service), Condition.READY, before_start)


def completed_of(service: Service | str) -> Dependency:
    """Depend on the one-shot `service` having completed (e.g. migrations)."""
    return Dependency(_name(service), Condition.COMPLETED)


def _name(service: Service | str) -> str:
    return service if isinstance(service, str) else service.name


def _dependencies(items: Iterable[Service | str | Dependency]) -> tuple[Dependency, ...]:
    """Each item as a Dependency: a service (or its name) must be ready first."""
    return tuple(i if isinstance(i, Dependency) else ready(i) for i in items)


# --- any container ---------------------------------------------------------------------------
def container(
    env: Env,
    name: str,
    image: str,
    *,
    command: Sequence[str] = (),
    environment: Mapping[str, str] | None = None,
    ports: Sequence[Port] = (),
    mounts: Sequence[Mount] = (),
    ready: ReadinessCheck | None = None,
    health: Sequence[str] = (),
    depends_on: Iterable[Service | str | Dependency] = (),
    group: str = "",
    title: str = "",
    links: Sequence[str] = ("{url}",),
    shortcuts: Sequence[Shortcut] = (),
    one_shot: bool = False,
    stop_signal: str | None = None,
    init: bool = False,
    user: str = "",
    disposable: bool = False,
) -> Service:
    """Any image as a service: its ports (`publish`), environment, volumes (`volume`,
    `bind`), a readiness check (`http`, `tcp`, `exec_check`, `log_line`, `completed`), an
    optional Docker health check command (`health`), dependencies and an optional group.
    `disposable`: it holds nothing a stop must flush, so `down` kills it at once. `init`:
    Docker's init runs as PID 1 and passes the stop signal on, for a program that does not
    handle it itself (as PID 1 it would ignore it, and every stop would wait 10 s). `health`
    without `ready`: `up` waits until the health command passes (devstack runs it too)."""
    test = health_test(strings(health, "health", name)) if health else ()
    if ready is None and not one_shot and test:
        ready = health_probe(test)
    return Service(
        name=name,
        image=image,
        title=title or name,
        command=strings(command, "command", name),
        environment=tuple(sorted((environment or {}).items())),
        ports=tuple(ports),
        mounts=tuple(mounts),
        readiness=ready or (Completed() if one_shot else None),
        healthcheck=healthcheck(env, test) if test else None,
        depends_on=_dependencies(depends_on),
        group=group,
        links=tuple(Link(t) for t in strings(links, "links", name)) if ports else (),
        shortcuts=tuple(shortcuts),
        one_shot=one_shot,
        stop_signal=stop_signal,
        init=init,
        user=user,
        disposable=disposable,
    )


def stack(env: Env, *services: Service) -> Stack:
    """The project's stack: its services (in the order `status` lists them), the project's
    network and the volumes they mount, the declared secrets and the groups turned on. A
    Prometheus among them (`prometheus`) scrapes every service that declares metrics."""
    volumes = dict.fromkeys(m.source for s in services for m in s.mounts if m.kind == "volume")
    return Stack(
        project=env.project,
        network=f"{env.project}_net",
        volumes=tuple(volumes),
        services=with_scrape_configs(services),
        secrets=tuple(env.secrets().items()),
        example_secrets=env.example_secrets(),
        groups_on=env.settings.groups,
        image_settings=tuple(env.image_keys.items()),
    )


def with_shortcuts(service: Service, *shortcuts: Shortcut) -> Service:
    """`service` with more exec shortcuts."""
    return replace(service, shortcuts=(*service.shortcuts, *shortcuts))
