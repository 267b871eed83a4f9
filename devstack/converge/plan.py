"""What to change: a pure comparison of the stack (what should exist) with a snapshot (what
does), as a graph of operations. Each operation carries its cause, its `Service` and the keys
of the operations that must finish before it; the executor runs the graph and decides nothing.

`str(plan)` lists the operations a user cares about (images, network, volumes, containers);
`plan.graph()` adds the start and readiness steps with their edges (for tests and debugging)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from graphlib import TopologicalSorter

from devstack.converge.observed import Observed, ObservedContainer
from devstack.declare.spec import Condition, Service, Stack


class Action(StrEnum):
    """What an operation does."""

    BUILD = "build"
    PULL = "pull"
    CREATE = "create"
    RECREATE = "recreate"
    START = "start"
    RESTART = "restart"
    RELEASE = "release"  # let a held service's program run (spec.Held)
    SEED = "seed"  # copy a service's init template into its new volume (spec.InitTemplate)
    WAIT = "wait"
    KEEP = "keep"
    REMOVE = "remove"
    DISCARD = "discard"  # remove at once, without a graceful stop: all it could keep goes too


class Kind(StrEnum):
    """What an operation acts on: a resource, or a step of a container's life."""

    IMAGE = "image"
    NETWORK = "network"
    VOLUME = "volume"
    CONTAINER = "container"
    START = "start"  # its start call
    RELEASE = "release"  # a held container's release (spec.Held)
    READY = "ready"  # its readiness check passed


NAME_WIDTH = 28  # the plan's name column; a longer name widens it for the whole plan


@dataclass(frozen=True)
class Operation:
    """One node of the plan: `action` on `kind` `name`, because of `cause`, after `after`."""

    action: Action
    kind: Kind
    name: str
    cause: str
    service: Service | None = None
    after: tuple[str, ...] = ()
    key: str = ""
    shown: bool = True  # listed by str(plan); start/ready steps are graph mechanics
    fresh: bool = False  # a wait on a container (re)started by this run

    def __str__(self) -> str:
        return self.line()

    def line(self, name_width: int = NAME_WIDTH) -> str:
        """`action kind name (cause)` with the name padded to `name_width` columns."""
        return f"{self.action.value:<9} {self.kind:<10} {self.name:<{name_width}} ({self.cause})"

    @property
    def service_name(self) -> str:
        """The name of the service this operation is about ("" for shared resources)."""
        return self.service.name if self.service else ""


@dataclass(frozen=True)
class Plan:
    """Operations in a stable, readable order; `after` edges say what may run in parallel."""

    operations: tuple[Operation, ...]

    def __str__(self) -> str:
        shown = [op for op in self.operations if op.shown]
        width = max([NAME_WIDTH, *(len(op.name) for op in shown)])  # a long name widens it all
        return "\n".join(op.line(width) for op in shown)

    def graph(self) -> str:
        """Every operation with its key and edges, one per line."""
        return "\n".join(
            f"{op.key} <- {', '.join(op.after) or '-'}  [{op.action.value}]"
            for op in self.operations
        )

    @property
    def changes(self) -> tuple[Operation, ...]:
        """Listed operations that change something (a one-shot job's routine run on every
        `up` is not a change: a stack whose job just runs again is up to date)."""
        return tuple(
            op
            for op in self.operations
            if op.shown and op.action is not Action.KEEP and not _routine(op)
        )

    def of_kind(self, kind: Kind) -> tuple[Operation, ...]:
        """Operations on one kind of resource."""
        return tuple(op for op in self.operations if op.kind == kind)

    def container(self, service: str) -> Operation | None:
        """The container operation of `service`."""
        return next((op for op in self.of_kind(Kind.CONTAINER) if op.service_name == service), None)

    def urgency(self) -> dict[str, int]:
        """For each operation (by key), how many operations follow it on its longest path to
        the plan's end: of the operations ready at once, the most urgent ones hold up the most
        (a database that a migrations job and the API wait for, before a cache nothing waits
        for)."""
        followers: dict[str, list[str]] = {op.key: [] for op in self.operations}
        for op in self.operations:
            for before in op.after:
                followers[before].append(op.key)
        urgency: dict[str, int] = {}
        for key in TopologicalSorter(followers).static_order():  # followers first
            urgency[key] = max((urgency[k] + 1 for k in followers[key]), default=0)
        return urgency


def _routine(op: Operation) -> bool:
    return op.action is Action.START and op.service is not None and op.service.one_shot


def _key(kind: str, name: str) -> str:
    return f"{kind}:{name}"


def plan_up(
    stack: Stack,
    observed: Observed,
    services: list[str] | None = None,
    ready: frozenset[str] = frozenset(),
) -> Plan:
    """Operations that bring `services` (default: all, with their dependencies) to the spec.
    `ready`: running services whose current start an earlier `up` found ready while Docker
    has not checked them yet (devstack.converge.verdicts): kept without a check."""
    names = stack.with_dependencies(services or list(stack.names))
    ops: list[Operation] = []
    images: dict[str, Service] = {}
    for name in names:
        images.setdefault(stack.service(name).image, stack.service(name))
    for image, service in images.items():
        key = _key(Kind.IMAGE, image)
        if image in observed.image_ids:
            cause = "inputs unchanged" if service.build else "present"
            ops.append(Operation(Action.KEEP, Kind.IMAGE, image, cause, service, key=key))
        elif service.build:
            ops.append(
                Operation(Action.BUILD, Kind.IMAGE, image, "inputs changed", service, key=key)
            )
        else:
            cause = "not present locally"
            ops.append(Operation(Action.PULL, Kind.IMAGE, image, cause, service, key=key))
    ops.append(_presence(stack.network, Kind.NETWORK, observed.networks))
    ops.extend(_presence(v, Kind.VOLUME, observed.volumes) for v in stack.volumes)
    # Each container waits for its own image only: the databases start (and initialise)
    # while the application's image builds. A failed build leaves them running, which the
    # next `up` keeps.
    container_ops = {name: _container_op(stack, stack.service(name), observed) for name in names}
    ops.extend(container_ops.values())
    seeds = [seed for op in container_ops.values() if (seed := _seed_op(op, observed))]
    ops.extend(seeds)
    seeded = frozenset(op.service_name for op in seeds)
    for name in names:
        ops.extend(_start_and_ready(stack.service(name), container_ops, observed, ready, seeded))
    ops.extend(_replaced_images(stack, observed, container_ops))
    known = set(stack.names)
    for service_name, orphan in sorted(observed.containers.items()):
        if service_name not in known:
            cause = "orphan: not in the stack any more; `down` removes it"
            key = _key("orphan", orphan.name)
            ops.append(Operation(Action.KEEP, Kind.CONTAINER, orphan.name, cause, key=key))
    return Plan(tuple(ops))


def _presence(name: str, kind: Kind, existing: frozenset[str]) -> Operation:
    if name in existing:
        return Operation(Action.KEEP, kind, name, "exists", key=_key(kind, name))
    return Operation(Action.CREATE, kind, name, "missing", key=_key(kind, name))


def _container_op(stack: Stack, service: Service, observed: Observed) -> Operation:
    current = observed.containers.get(service.name)
    action, cause = container_action(service, current, observed, stack.network)
    needs = [_key(Kind.IMAGE, service.image), _key(Kind.NETWORK, stack.network)]
    needs += [_key(Kind.VOLUME, m.source) for m in service.mounts if m.source in stack.volumes]
    return Operation(
        action,
        Kind.CONTAINER,
        stack.container_name(service.name),
        cause,
        service,
        after=tuple(needs),
        key=_key(Kind.CONTAINER, service.name),
    )


def _seed_op(container: Operation, observed: Observed) -> Operation | None:
    """A new container on a volume this run creates starts on a copy of its service's init
    template (made first if there is none for its inputs) instead of initialising it."""
    service = container.service
    if service is None or service.init_template is None or container.action is Action.KEEP:
        return None
    volume = service.init_volume
    if volume in observed.volumes:
        return None
    cause = f"new: a copy of {service.name}'s init template"
    key = _key(Action.SEED, service.name)
    return Operation(Action.SEED, Kind.VOLUME, volume, cause, service, (container.key,), key)


def container_action(
    service: Service, current: ObservedContainer | None, observed: Observed, network: str
) -> tuple[Action, str]:
    """Create, recreate, start or keep, and why."""
    if current is None:
        return Action.CREATE, "missing"
    if current.config_hash != service.config_hash():
        return Action.RECREATE, explain_drift(service, current)
    if current.image != service.image:
        return Action.RECREATE, f"image {service.image} replaces {current.image}"
    wanted_id = observed.image_ids.get(service.image)
    if wanted_id and current.image_id and wanted_id != current.image_id:
        return Action.RECREATE, f"image {service.image} was updated"
    network_id = observed.network_ids.get(network)
    attached = current.networks.get(network)
    # a container never started (created) lists its network with no id yet: not a removal
    never_started = current.state == "created" and attached == ""
    if current.networks and attached != network_id and not never_started:
        return Action.RECREATE, f"its network {network} was removed"
    if service.one_shot:
        if current.completed:  # its inputs are in its configuration (e.g. the migration files)
            return Action.KEEP, "completed, nothing changed since"
        return Action.START, "runs again"
    if current.state == "running":
        return Action.KEEP, "up to date"
    if current.state in {"created", "exited"}:
        return Action.START, "stopped" if current.state == "exited" else "created, not started"
    return Action.RECREATE, f"container is {current.state}"


def _start_and_ready(
    service: Service,
    container_ops: dict[str, Operation],
    observed: Observed,
    known_ready: frozenset[str] = frozenset(),
    seeded: frozenset[str] = frozenset(),
) -> list[Operation]:
    """The start step (after the dependencies its conditions name, and its volume's seed)
    and the readiness step."""
    container = container_ops[service.name]
    ready_key = _key(Kind.READY, service.name)
    deps_ready = tuple(_key(Kind.READY, d.service) for d in service.depends_on)
    if container.action is Action.KEEP:
        current = observed.containers[service.name]
        healthy = current.health == "healthy"
        known = not healthy and current.health == "starting" and service.name in known_ready
        action = Action.KEEP if healthy or known else Action.WAIT
        cause = "Docker reports it healthy" if healthy else service_check(service)
        if known:
            cause = "an earlier up found this start ready; Docker has not checked it yet"
        ready = Operation(
            action,
            Kind.READY,
            container.name,
            cause,
            service,
            (container.key, *deps_ready),
            key=ready_key,
            shown=False,
        )
        return [ready]
    # A held service's new container starts once its dependencies' containers were started
    # and holds; its release waits for what must come before its program (e.g. the job).
    # A stopped one may have been released before (then it would not hold): strict order.
    early_hold = service.held is not None and container.action in {
        Action.CREATE,
        Action.RECREATE,
    }
    before_start = [_key(Action.SEED, service.name)] if service.name in seeded else []
    before_release: list[str] = []

    def started(name: str) -> str:
        """When `name` counts as started for those that start beside it: its start call;
        while its new volume is filled (disk work in the engine), its creation, so that
        their start and preload overlap the filling."""
        return container_ops[name].key if name in seeded else _key(Kind.START, name)

    for dependency in service.depends_on:
        dep = container_ops.get(dependency.service)
        early = not dependency.before_start and dependency.condition is Condition.READY
        if early and dep is not None and dep.action is not Action.KEEP:
            before_start.append(started(dependency.service))
        elif early_hold and dependency.before_start:
            before_release.append(_key(Kind.READY, dependency.service))
            held_too = dep is not None and dep.service is not None and dep.service.held
            if dep is not None and dep.action is not Action.KEEP and not held_too:
                # after its start call: the dependency's own start comes first (a held one's
                # start is no earlier than this one's would be: no chain of start calls)
                before_start.append(started(dependency.service))
        else:
            before_start.append(_key(Kind.READY, dependency.service))
    causes = [f"{d.service} {d.condition.value}" for d in service.depends_on if d.before_start]
    after_causes = "after " + ", ".join(causes) if causes else "no dependencies"
    start = Operation(
        Action.START,
        Kind.START,
        container.name,
        f"held until {', '.join(causes)}" if early_hold and causes else after_causes,
        service,
        (container.key, *before_start),
        key=_key(Kind.START, service.name),
        shown=False,
    )
    ops = [start]
    if service.held is not None:
        release = Operation(
            Action.RELEASE,
            Kind.RELEASE,
            container.name,
            after_causes,
            service,
            (start.key, *before_release),
            key=_key(Kind.RELEASE, service.name),
            shown=False,
        )
        ops.append(release)
    ready = Operation(
        Action.WAIT,
        Kind.READY,
        container.name,
        service_check(service),
        service,
        (ops[-1].key, *deps_ready),
        key=ready_key,
        shown=False,
        fresh=True,
    )
    return [*ops, ready]


def service_check(service: Service) -> str:
    """What readiness means for `service`, in words."""
    return service.readiness.describe() if service.readiness else "no readiness check"


def _replaced_images(
    stack: Stack, observed: Observed, container_ops: dict[str, Operation]
) -> list[Operation]:
    """Drop the tag of an image devstack built once the last container using it (of any
    project) is recreated onto another image by this plan."""
    ops = []
    for reference, use in sorted(observed.replaced_images.items()):
        if not use.built_by_devstack:
            continue
        recreated = {
            op.name: op.key
            for name, op in container_ops.items()
            if op.action is Action.RECREATE and observed.containers[name].image == reference
        }
        if recreated and use.users <= recreated.keys():
            ops.append(
                Operation(
                    Action.REMOVE,
                    Kind.IMAGE,
                    reference,
                    "replaced; no container uses it any more",
                    after=tuple(sorted(recreated.values())),
                    key=_key("drop-image", reference),
                )
            )
    return ops


def explain_drift(service: Service, current: ObservedContainer) -> str:
    """'env AI_AGENTS_REDIS_URL changed, ports changed' from the per-item fingerprints."""
    wanted, had = service.config_fields(), current.config_fields
    if not had:
        return "configuration changed"
    parts = [f"{k} changed" for k in sorted(wanted) if k in had and had[k] != wanted[k]]
    parts += [f"{k} added" for k in sorted(wanted.keys() - had.keys())]
    parts += [f"{k} removed" for k in sorted(had.keys() - wanted.keys())]
    return ", ".join(parts) or "configuration changed"


def plan_down(
    stack: Stack, observed: Observed, volumes: bool, services: list[str] | None = None
) -> Plan:
    """Remove containers (dependents first), then the network, then volumes only if asked.
    A `disposable` service (it holds nothing a stop must flush) is discarded: killed and
    removed without a graceful stop, still after its own dependents, so what it depends on
    stops only once it is gone. With the volumes, a container that can keep nothing outside
    them (no writable bind mount) is discarded at once, all in parallel: a graceful stop and
    a final flush would only write what is about to be deleted."""
    known = set(stack.names)
    if services:
        order = stack.dependents(services)
    else:
        orphans = sorted(n for n in observed.containers if n not in known)
        order = orphans + list(reversed(stack.start_order()))
    present = [n for n in order if n in observed.containers]
    ops = []
    for name in present:
        service = stack.service(name) if name in known else None
        wiped = volumes and not services and service is not None and _keeps_nothing(service)
        disposable = service is not None and service.disposable
        dependents = [
            _key("remove", s.name)
            for s in stack.services
            if name in s.dependency_names and s.name in present and not wiped
        ]
        cause = "down"
        if wiped:
            cause = "--volumes: its data goes too"
        elif disposable:
            cause = "disposable: nothing to flush"
        ops.append(
            Operation(
                Action.DISCARD if wiped or disposable else Action.REMOVE,
                Kind.CONTAINER,
                observed.containers[name].name,
                cause,
                service,
                tuple(dependents),
                key=_key("remove", name),
            )
        )
    if services:
        return Plan(tuple(ops))
    for name in observed.one_offs:  # on the network, maybe on a volume: removed first
        cause = "a one-off container"
        ops.append(
            Operation(Action.DISCARD, Kind.CONTAINER, name, cause, key=_key("one-off", name))
        )
    removed = tuple(op.key for op in ops)
    if stack.network in observed.networks:
        key = _key(Kind.NETWORK, stack.network)
        ops.append(
            Operation(Action.REMOVE, Kind.NETWORK, stack.network, "down", None, removed, key)
        )
    for volume in sorted(observed.volumes):
        key = _key(Kind.VOLUME, volume)
        if volumes:
            ops.append(
                Operation(Action.REMOVE, Kind.VOLUME, volume, "--volumes", None, removed, key)
            )
        else:
            cause = "data kept; --volumes deletes it"
            ops.append(Operation(Action.KEEP, Kind.VOLUME, volume, cause, key=key))
    return Plan(tuple(ops))


def _keeps_nothing(service: Service) -> bool:
    """Whether everything `service` can write is in named volumes (no writable bind mount)."""
    return all(m.kind == "volume" or m.read_only for m in service.mounts)


def plan_restart(stack: Stack, observed: Observed, services: list[str]) -> Plan:
    """Restart `services` (dependencies before dependents) and wait until each is ready."""
    from devstack.errors import ServiceFailed

    ops = []
    for name in stack.start_order(services):
        container = observed.containers.get(name)
        if container is None:
            raise ServiceFailed(
                f"{name} has no container in project {stack.project}",
                hint=f"create it with `python -m devstack up {name}`",
            )
        service = stack.service(name)
        deps = tuple(_key(Kind.READY, d) for d in service.dependency_names if d in services)
        restart_key = _key("restart", name)
        ops.append(
            Operation(
                Action.RESTART,
                Kind.CONTAINER,
                container.name,
                "restart",
                service,
                deps,
                key=restart_key,
            )
        )
        ops.append(
            Operation(
                Action.WAIT,
                Kind.READY,
                container.name,
                service_check(service),
                service,
                (restart_key,),
                key=_key(Kind.READY, name),
                shown=False,
                fresh=True,
            )
        )
    return Plan(tuple(ops))
