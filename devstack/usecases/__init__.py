"""The use cases: up, down, status, restart, logs and exec as typed Python functions.

The CLI parses arguments, calls one of these and renders the result; the pytest plugin and the
Kubernetes export call them too. Nothing here prints: progress goes to a `Reporter`."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from devstack.converge.engine_protocol import Engine
from devstack.converge.observed import Observed
from devstack.converge.progress import REMOVED, SKIPPED, Event, Reporter
from devstack.converge.status import StatusRow, status_rows, unwatched
from devstack.declare.settings import Settings, load_settings
from devstack.declare.spec import Build, Service, Stack
from devstack.engine.endpoint import Endpoint
from devstack.errors import ConfigError, DevstackError, ServiceFailed
from devstack.usecases.lock import project_lock
from devstack.usecases.ports import check_ports
from devstack.usecases.threads import each_at_once

if TYPE_CHECKING:  # the executor and builds are imported only by the commands that run them
    from devstack.converge.executor import RunResult
    from devstack.converge.plan import Plan
    from devstack.converge.timeline import Recorder, Timeline


@dataclass(frozen=True)
class Project:
    """A checkout's validated settings and its declared stack (build tags not resolved):
    `stack` holds the services turned on (no group, or a group turned on), `declared` every
    service (`down` removes, and `status` shows, a running one of a group turned off)."""

    settings: Settings
    stack: Stack
    declared: Stack | None = None

    @property
    def whole(self) -> Stack:
        """Every declared service, groups turned off included."""
        return self.declared or self.stack

    def visible(self, observed: Observed) -> Stack:
        """The services turned on, and those of groups turned off that have a container."""
        whole = self.whole
        names = {*self.stack.names, *(n for n in observed.containers if n in whole.names)}
        keep = set(whole.with_dependencies(sorted(names)))
        return replace(whole, services=tuple(s for s in whole.services if s.name in keep))

    def check_services(self, names: Sequence[str]) -> None:
        """Every name must be a declared service."""
        for name in names:
            if name not in self.whole.names:
                raise ConfigError(
                    f"unknown service {name!r}", hint=f"choose from {sorted(self.whole.names)}"
                )

    def check_on(self, names: Sequence[str]) -> None:
        """Every name must be a service turned on (not in a group turned off)."""
        self.check_services(names)
        for name in names:
            if name not in self.stack.names:
                group = self.whole.service(name).group
                raise ConfigError(
                    f"{name} is in group {group!r}, which is off",
                    hint=f"turn it on: `up --with {group}` (or DEVSTACK_WITH={group} in .env)",
                )


def load_project(
    project_dir: Path, env_file: Path | None = None, groups: Sequence[str] = ()
) -> Project:
    """Read `.env` (or `env_file`) and run the project's `stack.py`, with the optional
    `groups` turned on as well; ConfigError on bad input."""
    from devstack.engine.endpoint import engine_host

    settings = load_settings(project_dir, env_file, engine_host=engine_host())
    return project_of(settings.with_groups(set(groups)))


def project_of(settings: Settings) -> Project:
    """The project these settings declare (its `stack.py`); ConfigError on bad input."""
    from devstack.declare.stackfile import declare

    declared = declare(settings)
    unknown = sorted(settings.groups - set(declared.groups))
    if unknown:
        raise ConfigError(
            f"no group {unknown[0]!r} in this stack",
            hint=f"its groups: {', '.join(declared.groups) or 'none'}",
        )
    try:
        active = declared.active()
    except ValueError as exc:
        raise ConfigError(str(exc), hint=settings.hint_for("DEVSTACK_WITH")) from None
    return Project(settings, active, declared)


def connect() -> Engine:
    """The Docker engine (DOCKER_HOST / context), or DockerUnavailable."""
    from devstack.engine.docker import DockerEngine

    return DockerEngine.connect()


def resolve_images(stack: Stack) -> Stack:
    """The stack with each build's content-addressed tag: one hash per distinct build."""
    from devstack.converge.build import image_tag

    builds: dict[Build, str] = {}
    for service in stack.services:
        if service.build and service.build not in builds:
            builds[service.build] = image_tag(service.build)
    return stack.with_images(builds)


# --- up ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class UpOutcome:
    """What `up` did: its plan, when each service became ready, and the final snapshot."""

    stack: Stack
    plan: Plan
    result: RunResult
    observed: Observed


def plan_for_up(project: Project, engine: Engine, services: Sequence[str] = ()) -> Plan:
    """What `up` would change, changing nothing."""
    stack = resolve_images(project.stack)
    observed = engine.snapshot(stack.project, images=[s.image for s in stack.services])
    plan = _plan_up(project, stack, observed, services)
    return _explain_jobs(plan, stack, observed, engine)


def _plan_up(
    project: Project,
    stack: Stack,
    observed: Observed,
    services: Sequence[str],
    trusted: frozenset[str] = frozenset(),
) -> Plan:
    """`up`'s plan; a whole-stack `up` also removes the containers of groups turned off
    (their volumes stay): `up --with monitoring`, then `up`, adds and removes the group."""
    from devstack.converge.plan import plan_down, plan_up

    declared_off = set(project.whole.names) - set(stack.names)
    off = [] if services else [n for n in observed.containers if n in declared_off]
    on = replace(
        observed, containers={n: c for n, c in observed.containers.items() if n not in off}
    )
    plan = plan_up(stack, on, list(services) or None, trusted)
    if not off:
        return plan
    removal = plan_down(project.whole, observed, False, off)
    causes = {n: f"group {project.whole.service(n).group!r} is off" for n in off}
    removal_ops = tuple(
        replace(op, cause=causes.get(op.service_name, op.cause)) for op in removal.operations
    )
    return replace(plan, operations=plan.operations + removal_ops)


def _explain_jobs(plan: Plan, stack: Stack, observed: Observed, engine: Engine) -> Plan:
    """For a one-shot service with a dry run (`migrate check`) whose image exists and whose
    dependencies run: its first output line becomes the cause (`migrations: at head`)."""
    from devstack.converge.plan import Kind

    operations = []
    for op in plan.operations:
        service = op.service
        runnable = (
            op.kind is Kind.CONTAINER
            and service is not None
            and service.one_shot
            and service.plan_command
            and service.image in observed.image_ids
            and all(
                name in observed.containers and observed.containers[name].running
                for name in service.dependency_names
            )
        )
        if runnable and service is not None:
            _, output = run_quietly(engine, stack, service, service.plan_command)
            first = output.strip().splitlines()[:1]
            op = replace(op, cause=first[0] if first else op.cause)
        operations.append(op)
    return replace(plan, operations=tuple(operations))


def up(
    project: Project,
    engine: Engine,
    report: Reporter,
    services: Sequence[str] = (),
    timeout: float | None = None,
    cancel: threading.Event | None = None,
) -> UpOutcome:
    """Build, create and start what is missing or changed; return once every service is
    ready (or raise the first failure)."""
    from devstack.converge.executor import Executor
    from devstack.converge.templates import repair, templates_dir

    project.check_on(services)
    refuse_host_paths(engine, project.stack.services, project.settings.dev_mode)
    stack = resolve_images(project.stack)
    with project_lock(stack.project, "up"):
        templates = templates_dir()
        for volume in repair(engine, stack, templates):
            report(Event(volume, REMOVED, "an earlier up was cut off filling it: made again"))
        observed = engine.snapshot(stack.project, images=[s.image for s in stack.services])
        stack, observed = _without_unobtainable(stack, observed, engine, report, services)
        trusted = _trusted(project, observed, stack)
        plan = _plan_up(project, stack, observed, services, trusted)
        check_ports(engine, plan, observed)
        recorder = _recorder(stack, report)
        executor = Executor(engine, stack, recorder, cancel, templates=templates)
        existing = {name: c.id for name, c in observed.containers.items()}
        try:
            result = executor.run(plan, timeout or project.settings.timeout, existing)
        finally:
            if plan.changes:  # an up-to-date `up` keeps the timeline of the one that started it
                _save_timeline(project, recorder.timeline(stack.names))
        if plan.changes:
            observed = engine.snapshot(stack.project)
        _record_ready(project, observed, result)
    return UpOutcome(stack, plan, result, observed)


def _without_unobtainable(
    stack: Stack, observed: Observed, engine: Engine, report: Reporter, named: Sequence[str]
) -> tuple[Stack, Observed]:
    """The stack without its optional services whose image is neither here nor pullable
    (one line says so for each): `up` brings up the rest. One named on the command line is
    not skipped: its pull fails `up` as any other would."""
    from devstack.converge.executor import pull_image

    missing = [
        s
        for s in stack.services
        if s.optional and s.image not in observed.image_ids and s.name not in named
    ]
    skipped: set[str] = set()
    for service in missing:
        try:
            pull_image(engine, service.image)
        except DevstackError:
            detail = f"image {service.image} is not here and cannot be pulled (no registry?)"
            report(Event(service.name, SKIPPED, f"{detail}; the rest comes up without it"))
            skipped.add(service.name)
    if len(skipped) < len(missing):  # something was pulled: its id is needed
        observed = engine.snapshot(stack.project, images=[s.image for s in stack.services])
    return stack.with_services([s for s in stack.services if s.name not in skipped]), observed


def _recorder(stack: Stack, report: Reporter) -> Recorder:
    """A reporter that also records the run's timeline (devstack.converge.timeline)."""
    from devstack.converge.timeline import Recorder

    checks = {s.name: s.readiness.describe() for s in stack.services if s.readiness}
    return Recorder(stack.project, report, checks)


def _save_timeline(project: Project, timeline: Timeline) -> None:
    from devstack.converge import timeline as timelines

    timelines.save(project.settings.project_dir, timeline)


def last_timeline(project: Project) -> Timeline | None:
    """The timeline of the project's last `up` that changed something, or None."""
    from devstack.converge import timeline as timelines

    return timelines.load(project.settings.project_dir, project.stack.project)


def _trusted(project: Project, observed: Observed, stack: Stack) -> frozenset[str]:
    """The running services of `stack` whose first Docker health check is still pending and
    whose current start an earlier `up` found ready (the listing's start mark is the one
    recorded: no engine call): a no-op `up` right after an `up` need not run every check
    again (35 services: ~0.7 s). Not those of a group turned off: `up` removes them."""
    from devstack.converge import verdicts

    checked = verdicts.recorded(project.settings.project_dir, project.stack.project)
    return frozenset(
        name
        for name, c in observed.containers.items()
        if name in stack.names
        and c.running
        and c.health == "starting"
        and verdicts.vouches(checked, c)
    )


def _record_ready(project: Project, observed: Observed, result: RunResult) -> None:
    """Remember which running containers passed their check, by the mark of their start in
    `observed` (see devstack.converge.verdicts); only those Docker still calls "starting"
    matter."""
    from devstack.converge import verdicts

    marks = {
        c.id: c.start_mark
        for name in result.ready_after
        if (c := observed.containers.get(name)) is not None
        and c.running
        and c.health == "starting"
        and c.start_mark
    }
    if marks:
        existing = [c.id for c in observed.containers.values()]
        verdicts.record(project.settings.project_dir, project.stack.project, marks, existing)


def refuse_host_paths(engine: Engine, services: Sequence[Service], dev_mode: bool) -> None:
    """A remote engine cannot mount this machine's files: refuse a service that bind-mounts
    one (dev mode mounts the sources) before anything changes, saying what to do instead."""
    remote = engine.endpoint.remote_host
    if not remote:
        return
    for service in services:
        for mount in service.mounts:
            if mount.kind != "bind":
                continue
            if dev_mode:
                raise ConfigError(
                    f"dev mode mounts this machine's {mount.source} into {service.name}, and "
                    f"the Docker engine on {remote} cannot see this machine's files",
                    hint="set DEVSTACK_DEV_MODE=false (the image carries the code; `up` "
                    "rebuilds it after a change), or use a Docker engine on this machine",
                )
            raise ConfigError(
                f"{service.name} mounts this machine's {mount.source}, which the Docker engine "
                f"on {remote} cannot see",
                hint="copy it into the image instead, or use a Docker engine on this machine",
            )


# --- status --------------------------------------------------------------------------------
@dataclass(frozen=True)
class StatusReport:
    """The rows `status` shows, the snapshot they came from, and the engine's address."""

    project: str
    rows: list[StatusRow]
    observed: Observed
    engine: Endpoint
    # whether the engine runs health checks at `start_interval` (API 1.44+); asked only when a
    # row is "ready (probed)", the one note that depends on it
    start_interval: bool | None = None


def status(project: Project, engine: Engine) -> StatusReport:
    """One snapshot of the project, compared with the declaration (no build hashing).
    A container whose first Docker health check is still pending reads "ready (probed)" when
    `up` found this start of it ready, or else when devstack's own check passes now."""
    from devstack.converge import verdicts

    observed = engine.snapshot(project.stack.project)
    stack = project.visible(observed)
    checked = verdicts.recorded(project.settings.project_dir, stack.project)
    probed = probe_starting(stack, observed, engine, checked)
    errors = code_errors(stack, observed, engine)
    ready = each_at_once(
        lambda n: (n, _passes(stack, observed, engine, n)), unwatched(stack, observed)
    )
    rows = status_rows(stack, observed, probed, errors, dict(ready))
    start_interval = has_start_interval(engine) if probed else None
    return StatusReport(stack.project, rows, observed, engine.endpoint, start_interval)


def has_start_interval(engine: Engine) -> bool:
    """Whether the engine's API (1.44+, Docker 25+) runs health checks at `start_interval`."""
    try:
        major, minor = (int(part) for part in engine.api_version().split(".")[:2])
    except (ValueError, DevstackError):
        return False
    return (major, minor) >= (1, 44)


def code_errors(stack: Stack, observed: Observed, engine: Engine) -> dict[str, str]:
    """The code error each running dev server reports (its one-line summary), by service."""

    def read(name: str) -> tuple[str, str]:
        path = stack.service(name).code_error_file
        text = (engine.read_file(observed.containers[name].id, path) or "").strip()
        return name, text.splitlines()[0] if text else ""

    names = [
        name
        for name, container in observed.containers.items()
        if name in stack.names and container.running and stack.service(name).code_error_file
    ]
    return {name: error for name, error in each_at_once(read, names) if error}


def probe_starting(
    stack: Stack, observed: Observed, engine: Engine, checked: Mapping[str, str] | None = None
) -> frozenset[str]:
    """The services whose health is still "starting" but that are ready: `up` found this
    very start of the container ready (`checked`: id -> start mark), or its check passes now."""
    from devstack.converge import verdicts

    def ready(name: str) -> str | None:
        check = stack.service(name).readiness
        if check is None or check.waits_for_exit:
            return None
        if verdicts.vouches(checked or {}, observed.containers[name]):
            return name  # no engine call: the listing says it is the start `up` checked
        return name if _passes(stack, observed, engine, name) else None

    starting = [
        name
        for name, c in observed.containers.items()
        if c.health == "starting" and name in stack.names
    ]
    return frozenset(name for name in each_at_once(ready, starting) if name)


def _passes(stack: Stack, observed: Observed, engine: Engine, name: str) -> bool:
    """Whether the service's readiness check passes now (a short timeout)."""
    from devstack.declare.checks import CheckTarget, ContainerState, NotReady

    check = stack.service(name).readiness
    container = observed.containers[name]
    state = ContainerState(container.state, 0, container.health, "")
    try:
        assert check is not None
        check.check(CheckTarget(engine, container.id, state, timeout=0.5))
    except (NotReady, ServiceFailed):
        return False
    return True


# --- down / restart ------------------------------------------------------------------------
def down(
    project: Project,
    engine: Engine,
    report: Reporter,
    services: Sequence[str] = (),
    volumes: bool = False,
) -> Plan:
    """Remove the project's containers (dependents first) and network; volumes only when
    `volumes`. Returns the plan that was carried out."""
    from devstack.converge.executor import Executor
    from devstack.converge.plan import plan_down

    project.check_services(services)
    stack = project.whole  # also what groups turned off left running
    with project_lock(stack.project, "down"):
        observed = engine.snapshot(stack.project)
        plan = plan_down(stack, observed, volumes, list(services) or None)
        if plan.changes:
            Executor(engine, stack, report).run(plan, project.settings.timeout, {})
        if volumes and not services:  # nothing of the project stays: nor its build caches
            from devstack.converge.build import forget_reuse_tags

            builds = list(dict.fromkeys(s.build for s in stack.services if s.build))
            forget_reuse_tags(engine, builds, stack.project)
    return plan


def restart(
    project: Project,
    engine: Engine,
    report: Reporter,
    services: Sequence[str] = (),
    timeout: float | None = None,
) -> RunResult:
    """Restart `services` (default: all) in dependency order, each ready before dependents."""
    from devstack.converge.executor import Executor
    from devstack.converge.plan import plan_restart

    project.check_on(services)
    stack = project.stack
    with project_lock(stack.project, "restart"):
        observed = engine.snapshot(stack.project)
        plan = plan_restart(stack, observed, list(services) or list(stack.names))
        existing = {name: c.id for name, c in observed.containers.items()}
        result = Executor(engine, stack, report).run(
            plan, timeout or project.settings.timeout, existing
        )
        _record_ready(project, engine.snapshot(stack.project), result)
        return result


# --- databases -----------------------------------------------------------------------------
def own_addresses(project: Project, engine: Engine) -> dict[str, str]:
    """IP address -> name (the service's, for its own container) of the project's running
    containers on the stack's network: the database clients that are the stack's own."""
    stack = project.stack
    found = engine.addresses(stack.project, stack.network)
    return {ip: name.removeprefix(f"{stack.project}-") for ip, name in found.items()}


# --- exec ----------------------------------------------------------------------------------
def running_container(project: Project, engine: Engine, service: str) -> str:
    """The id of `service`'s running container, or ServiceFailed saying how to start it."""
    project.check_services([service])
    container = engine.snapshot(project.stack.project).containers.get(service)
    if container is None or not container.running:
        raise ServiceFailed(
            f"{service} is not running in project {project.stack.project}",
            hint=f"start it: `python -m devstack up {service}`",
        )
    return container.id


def exec_in(
    project: Project, engine: Engine, service: str, argv: Sequence[str], interactive: bool
) -> int:
    """Run `argv` in `service`'s container; returns its exit code."""
    from devstack.usecases.exec import run_in_container

    if not argv:
        raise ConfigError("exec needs a command: `exec SERVICE -- CMD...`")
    container = running_container(project, engine, service)
    return run_in_container(engine, container, list(argv), interactive=interactive)


def run_shortcut(
    project: Project,
    engine: Engine,
    name: str,
    args: Sequence[str],
    report: Reporter,
    write: Callable[[bytes], object],
    interactive: bool = False,
) -> int:
    """Run the declared shortcut `name` (psql, migrate, test...) with `args`: in the service's
    running container, or as a one-off container; returns the command's exit code."""
    found = project.stack.shortcut(name)
    if found is None:
        raise ConfigError(f"no shortcut {name!r} in this stack")
    service, shortcut = found
    if shortcut.unavailable:
        raise ConfigError(shortcut.unavailable)
    argv = shortcut.argv(args)
    if not shortcut.one_off:
        return exec_in(project, engine, service.name, argv, interactive)
    if shortcut.up_first:
        up(project, engine, report, shortcut.up_first)
    user = f"{os.getuid()}:{os.getgid()}" if shortcut.as_invoking_user else service.user
    mounted = {m.target for m in shortcut.mounts}
    one_off = replace(
        service,
        command=tuple(argv),
        environment=tuple(
            sorted({**dict(service.environment), **dict(shortcut.environment)}.items())
        ),
        mounts=(*(m for m in service.mounts if m.target not in mounted), *shortcut.mounts),
        user=user,
    )
    stack = resolve_images(project.stack)
    if service.one_shot:  # e.g. `migrate downgrade -1`: the next `up` runs the job again
        engine.remove_container(stack.container_name(service.name))
    return run_one_off(
        engine, stack, replace(one_off, image=stack.service(service.name).image), write
    )


def run_one_off(
    engine: Engine, stack: Stack, service: Service, write: Callable[[bytes], object]
) -> int:
    """Run `service` once in a new container on the stack's network (no published ports),
    stream its output to `write`, remove it, and return its exit code. Interrupted (Ctrl-C),
    the container is killed and removed at once: its program may ignore the stop signal as
    PID 1 (pytest does), and a one-off keeps nothing a graceful stop would save."""
    import secrets

    refuse_host_paths(engine, [service], dev_mode=False)
    container = engine.create_container(stack, service, one_off=f"run-{secrets.token_hex(3)}")
    try:
        engine.start(container)
        for chunk in engine.output(container):
            write(chunk)
        return engine.wait(container)
    finally:
        engine.discard_container(container)


def run_quietly(
    engine: Engine, stack: Stack, service: Service, argv: Sequence[str]
) -> tuple[int, str]:
    """`argv` in a one-off container of `service`: exit code and output."""
    chunks: list[bytes] = []
    code = run_one_off(engine, stack, replace(service, command=tuple(argv)), chunks.append)
    return code, b"".join(chunks).decode(errors="replace")
