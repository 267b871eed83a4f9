"""What to change: a pure comparison of the stack (what should exist) with a snapshot (what
does), as a list of operations each carrying its cause. The executor makes no decisions."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from devstack.observed import Observed, ObservedContainer
from devstack.spec import Service, Stack


class Action(StrEnum):
    BUILD = "build"
    PULL = "pull"
    CREATE = "create"
    RECREATE = "recreate"
    START = "start"
    KEEP = "keep"
    REMOVE = "remove"


@dataclass(frozen=True)
class Operation:
    action: Action
    kind: str  # image | network | volume | container
    name: str
    cause: str
    service: str = ""

    def __str__(self) -> str:
        return f"{self.action.value:<9} {self.kind:<10} {self.name:<28} ({self.cause})"


@dataclass(frozen=True)
class Plan:
    operations: tuple[Operation, ...]

    def __str__(self) -> str:
        return "\n".join(str(op) for op in self.operations)

    @property
    def changes(self) -> tuple[Operation, ...]:
        return tuple(op for op in self.operations if op.action is not Action.KEEP)

    def of_kind(self, kind: str) -> tuple[Operation, ...]:
        return tuple(op for op in self.operations if op.kind == kind)

    def container(self, service: str) -> Operation | None:
        for op in self.of_kind("container"):
            if op.service == service:
                return op
        return None


def plan_up(stack: Stack, observed: Observed, services: list[str] | None = None) -> Plan:
    """Operations that bring `services` (default: all, with their dependencies) to the spec."""
    names = stack.with_dependencies(services or [s.name for s in stack.services])
    ops: list[Operation] = []
    for name in names:
        service = stack.service(name)
        if service.image in observed.image_ids:
            ops.append(Operation(Action.KEEP, "image", service.image, _have_image(service), name))
        elif service.build:
            ops.append(Operation(Action.BUILD, "image", service.image, "inputs changed", name))
        else:
            ops.append(Operation(Action.PULL, "image", service.image, "not present locally", name))
    ops.append(_presence(stack.network, "network", observed.networks))
    ops.extend(_presence(v, "volume", observed.volumes) for v in stack.volumes)
    for name in names:
        service = stack.service(name)
        current = observed.containers.get(name)
        action, cause = _container_action(service, current, observed)
        ops.append(Operation(action, "container", stack.container_name(name), cause, name))
    known = {s.name for s in stack.services}
    for service_name, orphan in sorted(observed.containers.items()):
        if service_name not in known:
            cause = "orphan: not in the stack any more; `down` removes it"
            ops.append(Operation(Action.KEEP, "container", orphan.name, cause, service_name))
    return Plan(tuple(ops))


def _have_image(service: Service) -> str:
    return "inputs unchanged" if service.build else "present"


def _presence(name: str, kind: str, existing: frozenset[str]) -> Operation:
    if name in existing:
        return Operation(Action.KEEP, kind, name, "exists")
    return Operation(Action.CREATE, kind, name, "missing")


def _container_action(
    service: Service, current: ObservedContainer | None, observed: Observed
) -> tuple[Action, str]:
    if current is None:
        return Action.CREATE, "missing"
    if current.config_hash != service.config_hash():
        return Action.RECREATE, explain_drift(service, current)
    wanted_id = observed.image_ids.get(service.image)
    if wanted_id and current.image_id and wanted_id != current.image_id:
        return Action.RECREATE, f"image {service.image} was updated"
    if current.state == "running":
        return Action.KEEP, "up to date"
    if current.state in {"created", "exited"}:
        return Action.START, "stopped" if current.state == "exited" else "created, not started"
    return Action.RECREATE, f"container is {current.state}"


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
    """Remove containers (dependents first), then the network, then volumes only if asked."""
    known = {s.name for s in stack.services}
    if services:
        order = stack.dependents(services)
    else:
        orphans = sorted(n for n in observed.containers if n not in known)
        order = orphans + [n for level in reversed(stack.levels()) for n in level]
    ops = [
        Operation(Action.REMOVE, "container", observed.containers[n].name, "down", n)
        for n in order
        if n in observed.containers
    ]
    if services:
        return Plan(tuple(ops))
    if stack.network in observed.networks:
        ops.append(Operation(Action.REMOVE, "network", stack.network, "down"))
    for volume in sorted(observed.volumes):
        if volumes:
            ops.append(Operation(Action.REMOVE, "volume", volume, "--volumes"))
        else:
            ops.append(Operation(Action.KEEP, "volume", volume, "data kept; --volumes deletes it"))
    return Plan(tuple(ops))
