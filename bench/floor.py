"""The readiness floor: the declared stack brought up from nothing by devstack's own plan
(`plan_up`) and executor, with nothing to build (the warm-up built the images) and readiness
polled every POLL s instead of devstack's growing 20-50 ms interval. What remains is what the
containers themselves take: devstack's `up` minus the floor is devstack's own overhead (its
start-up, observing, build hashing, lock, rendering)."""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import docker.errors

from bench.common import BenchError, log, remove_labelled
from bench.scenarios import FLOORS
from devstack.converge.engine_protocol import Engine
from devstack.converge.executor import Executor
from devstack.converge.plan import Action, Kind, Plan, plan_up
from devstack.converge.progress import STARTING, Event
from devstack.converge.templates import templates_dir
from devstack.declare import labels
from devstack.declare.spec import Condition, Stack
from devstack.usecases import load_project, resolve_images

if TYPE_CHECKING:
    from bench.harness import Bench

POLL = 0.02  # the floor's polling interval (seconds)
FLOOR_DEADLINE = 180.0


@dataclass
class EngineCalls:
    """A progress reporter that notes when each service's start and release call began."""

    started: dict[str, float] = field(default_factory=dict)
    released: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, event: Event) -> None:
        if event.phase != STARTING:
            return
        now = time.monotonic()
        calls = self.released if event.detail.startswith("released") else self.started
        with self.lock:
            calls.setdefault(event.subject, now)


def all_at_once(stack: Stack) -> Stack:
    """`stack` with every dependency on readiness dropped but a one-shot job's (a job still
    needs what it runs against): every service starts at once (floor-parallel)."""
    services = tuple(
        replace(
            service,
            depends_on=tuple(
                d
                for d in service.depends_on
                if service.one_shot or d.condition is not Condition.READY
            ),
        )
        for service in stack.services
    )
    return replace(stack, services=services)


def check_floor_plan(plan: Plan, fresh_volumes: bool) -> None:
    """The floor measures containers only: every image is there, every container is new,
    and the volumes are new (or kept, for floor-volumes)."""
    for op in plan.of_kind(Kind.IMAGE):
        if op.action is not Action.KEEP:
            raise BenchError(f"floor: image {op.name} is missing (the plan would {op.action})")
    for op in plan.of_kind(Kind.CONTAINER):
        if op.action is not Action.CREATE:
            raise BenchError(f"floor: container {op.name} exists ({op.action}: {op.cause})")
    wanted = Action.CREATE if fresh_volumes else Action.KEEP
    for op in plan.of_kind(Kind.VOLUME):
        if op.action not in {wanted, Action.SEED}:  # a new volume's copy of its template
            raise BenchError(f"floor: volume {op.name} {op.cause}; expected {wanted}")


def measure_floor(
    engine: Engine, stack: Stack, fresh_volumes: bool = True, parallel: bool = False
) -> dict[str, float]:
    """Bring `stack` up with devstack's plan and executor (polling every POLL s); `parallel`:
    with every service started at once (`all_at_once`). Returns, in s from the start of the
    run (its first engine call): each service's start call, release call (held services),
    start call to ready, and ready (its own check passed and its dependencies are ready);
    `floor` is the last of them. The snapshot and the plan come before the clock starts."""
    if parallel:
        stack = all_at_once(stack)
    observed = engine.snapshot(stack.project, images=[s.image for s in stack.services])
    plan = plan_up(stack, observed)
    check_floor_plan(plan, fresh_volumes)
    calls = EngineCalls()
    begun = time.monotonic()
    # a new volume starts from its init template, as devstack's own `up` does
    executor = Executor(engine, stack, calls, poll=POLL, templates=templates_dir())
    result = executor.run(plan, FLOOR_DEADLINE, {})
    times: dict[str, float] = {}
    for name in stack.names:
        start_call = calls.started[name] - begun
        times[f"{name}_start_call"] = start_call
        if name in calls.released:
            times[f"{name}_release_call"] = calls.released[name] - begun
        times[f"{name}_after_start"] = result.ready_after[name] - start_call
        times[name] = result.ready_after[name]
    times["floor"] = max(result.ready_after[name] for name in stack.names)
    return times


def run_floors(bench: Bench, index: int) -> None:
    """The selected floors, each from nothing but floor-volumes (after the fresh floor)."""
    wanted = [f for f in FLOORS if f in bench.scenarios]
    if "floor-volumes" in wanted and "floor" not in wanted:
        wanted.insert(0, "floor")  # initializes the volumes; not recorded
        record_fresh = False
    else:
        record_fresh = True
    stack = resolve_images(load_project(bench.base, bench.floor_env).stack)
    ensure_floor_images(bench, stack)
    try:
        for variant in wanted:
            times = measure_floor(
                bench.engine,
                stack,
                fresh_volumes=variant != "floor-volumes",
                parallel=variant == "floor-parallel",
            )
            keep = variant == "floor" and "floor-volumes" in wanted
            remove_labelled(bench.client, labels.PROJECT, stack.project, volumes=not keep)
            if variant == "floor" and not record_fresh:
                continue
            times = {k: round(v, 4) for k, v in times.items()}
            bench.floors.setdefault(variant, []).append(times)
            bench.record(variant, "floor", times["floor"])
            each = "  ".join(f"{name} {times[name]:.3f}s" for name in stack.names)
            log(f"run {index}/{bench.runs} {variant:<15} {each}")
    finally:
        remove_labelled(bench.client, labels.PROJECT, stack.project)


def ensure_floor_images(bench: Bench, stack: Stack) -> None:
    """The floor's tree is the pristine copy, so its build tags are the ones the warm-up
    built; put back a tag that devstack dropped since (a recreate onto a newer image)."""
    for service in stack.services:
        if not service.build:
            continue
        with contextlib.suppress(docker.errors.ImageNotFound):
            bench.client.images.get(service.image)
            continue
        reference = bench.reference_images.get(service.image)
        if reference is None:
            raise BenchError(f"floor: image {service.image} was never built in this run")
        bench.client.images.get(reference).tag(*service.image.rsplit(":", 1))
        bench.made_images.add(service.image)
