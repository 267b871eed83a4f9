"""Carry out a plan against the engine. No decisions are made here: the plan says what to do;
this room only orders it (dependencies first, independent services in parallel) and reports."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from devstack import labels
from devstack.build import build_image
from devstack.engine import Engine
from devstack.errors import DockerApiError, ImageUnavailable, ResourceConflict, ServiceFailed
from devstack.observed import Observed
from devstack.plan import Action, Operation, Plan
from devstack.progress import (
    BUILDING,
    CREATING,
    FAILED,
    HEALTHY,
    KEPT,
    PULLING,
    REMOVED,
    REMOVING,
    STARTING,
    WAITING,
    Event,
    Reporter,
)
from devstack.readiness import Cancelled, wait_ready
from devstack.spec import API_IMAGE_REPO, Stack


@dataclass
class UpResult:
    ready_after: dict[str, float] = field(default_factory=dict)  # seconds from start of `up`


def check_ports(engine: Engine, stack: Stack, plan: Plan, observed: Observed) -> None:
    """Before anything changes: every host port a container will take must be free."""
    ours = {p.host_port for c in observed.containers.values() if c.running for p in c.ports}
    known = {s.name for s in stack.services}
    for op in plan.of_kind("container"):
        if op.action is Action.KEEP or op.service not in known:
            continue
        for port in stack.service(op.service).ports:
            if port.host_port in ours or _port_free(port.host_ip, port.host_port):
                continue
            holder = _port_holder(engine, port.host_port)
            raise ResourceConflict(
                f"host port {port.host_port} ({port.setting}) is already in use by {holder}",
                hint=f"stop it, or set {port.setting} in .env to a free port",
            )


def _port_free(host_ip: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host_ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host_ip, port))
        except OSError:
            return False
    return True


def _port_holder(engine: Engine, port: int) -> str:
    for row in engine.running_containers():
        if any(p.get("PublicPort") == port for p in row.get("Ports") or []):
            name = (row.get("Names") or ["?"])[0].lstrip("/")
            project = (row.get("Labels") or {}).get(labels.PROJECT)
            owner = f" of devstack project {project}" if project else ""
            return f"container {name}{owner}"
    return "another process (not a container)"


class Executor:
    def __init__(self, engine: Engine, stack: Stack, observed: Observed, report: Reporter):
        self.engine = engine
        self.stack = stack
        self.observed = observed
        self.report = report
        self.cancel = threading.Event()
        self.known = {s.name for s in stack.services}

    # --- up --------------------------------------------------------------------------------
    def up(self, plan: Plan, timeout: float) -> UpResult:
        started = time.monotonic()
        deadline = started + timeout
        for op in plan.of_kind("image"):
            self._image(op)
        for op in plan.changes:
            if op.kind == "network":
                self.engine.create_network(op.name, self.stack.project)
            elif op.kind == "volume":
                self.engine.create_volume(op.name, self.stack.project)
        ops = [op for op in plan.of_kind("container") if op.service in self.known]
        ready = {op.service: threading.Event() for op in ops}
        result = UpResult()

        def converge(op: Operation) -> None:
            self._converge_container(op, ready, deadline)
            result.ready_after[op.service] = time.monotonic() - started
            self.report(Event(op.service, HEALTHY, f"{result.ready_after[op.service]:.1f}s"))
            ready[op.service].set()

        self._run_parallel([(op, converge) for op in ops])
        for op in ops:  # drop the tags of API images that a recreate replaced
            old = self.observed.containers.get(op.service)
            new = self.stack.service(op.service).image
            if op.action is Action.RECREATE and old and old.image != new:
                self._drop_api_image(old.image)
        return result

    def _drop_api_image(self, reference: str) -> None:
        if reference.startswith(API_IMAGE_REPO):
            self.engine.remove_image_tag(reference)

    def _image(self, op: Operation) -> None:
        service = self.stack.service(op.service)
        if op.action is Action.BUILD and service.build:
            self.report(Event(op.service, BUILDING, "sending context"))
            build_image(
                self.engine,
                service.build,
                service.image,
                lambda step: self.report(Event(op.service, BUILDING, step)),
            )
        elif op.action is Action.PULL:
            self.report(Event(op.service, PULLING, op.name))
            try:
                for chunk in self.engine.pull(op.name):
                    if "error" in chunk:
                        raise DockerApiError(str(chunk["error"]))
                    status = str(chunk.get("status", ""))
                    if status:
                        self.report(Event(op.service, PULLING, f"{op.name}: {status}"))
            except DockerApiError as exc:
                raise ImageUnavailable(
                    f"image {op.name} is not on this machine and cannot be pulled "
                    f"({exc.message.splitlines()[0][-160:]})",
                    hint="no registry reachable? `bash scripts/bootstrap.sh --local-images` builds "
                    "local stand-ins and names them in .env (README: Offline / air-gapped hosts)",
                ) from exc

    def _converge_container(
        self, op: Operation, ready: dict[str, threading.Event], deadline: float
    ) -> None:
        service = self.stack.service(op.service)
        current = self.observed.containers.get(op.service)
        if op.action is Action.KEEP and current and current.health == "healthy":
            return  # untouched, and Docker's own check passed within its interval
        container = current.id if current else ""
        if op.action is Action.RECREATE and current:
            self.report(Event(op.service, REMOVING, op.cause))
            self.engine.remove_container(current.id)
        if op.action in {Action.CREATE, Action.RECREATE}:
            self.report(Event(op.service, CREATING, op.cause))
            container = self._create(op)
        for dependency in service.depends_on:
            event = ready.get(dependency)
            while event is not None and not event.wait(0.05):
                if self.cancel.is_set():
                    raise Cancelled
        if op.action is not Action.KEEP:
            self.report(Event(op.service, STARTING))
            self.engine.start(container)
        self.report(Event(op.service, WAITING, "probing"))
        wait_ready(
            self.engine,
            container,
            service,
            deadline,
            self.cancel,
            lambda seen: self.report(Event(op.service, WAITING, seen)),
        )

    def _create(self, op: Operation) -> str:
        try:
            return self.engine.create_container(self.stack, self.stack.service(op.service))
        except DockerApiError as exc:
            if exc.status == DockerApiError.CONFLICT:
                raise ResourceConflict(
                    f"a container named {op.name} exists but is not part of project "
                    f"{self.stack.project}",
                    hint="remove or rename it (`docker rm -f NAME`) or set DEVSTACK_PROJECT",
                ) from exc
            raise

    def _run_parallel(self, jobs: list[tuple[Operation, Callable[[Operation], None]]]) -> None:
        """Run one job per operation in threads; first failure cancels the rest."""
        if not jobs:
            return
        pool = ThreadPoolExecutor(max_workers=len(jobs), thread_name_prefix="devstack")
        futures: dict[Future[None], Operation] = {pool.submit(job, op): op for op, job in jobs}
        try:
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            failed = [f for f in done if f.exception() and not isinstance(f.exception(), Cancelled)]
            if failed:
                self.cancel.set()
                wait(futures)
                error = failed[0].exception()
                self.report(Event(futures[failed[0]].service, FAILED, str(error)))
                raise error  # type: ignore[misc]
        except BaseException:
            self.cancel.set()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    # --- restart ---------------------------------------------------------------------------
    def restart(self, services: list[str], timeout: float) -> None:
        """Restart `services` in dependency order, each ready before the next."""
        deadline = time.monotonic() + timeout
        for name in [n for level in self.stack.levels() for n in level if n in services]:
            container = self.observed.containers.get(name)
            if container is None:
                raise ServiceFailed(
                    f"{name} has no container in project {self.stack.project}",
                    hint=f"create it with `python -m devstack up {name}`",
                )
            started = time.monotonic()
            self.report(Event(name, STARTING, "restarting"))
            self.engine.restart(container.id)
            wait_ready(self.engine, container.id, self.stack.service(name), deadline, self.cancel)
            self.report(Event(name, HEALTHY, f"{time.monotonic() - started:.1f}s"))

    # --- down ------------------------------------------------------------------------------
    def down(self, plan: Plan) -> None:
        containers = {op.service: op for op in plan.of_kind("container")}
        known_levels = [
            [containers[n] for n in level if n in containers]
            for level in reversed(self.stack.levels())
        ]
        orphans = [op for name, op in containers.items() if name not in self.known]
        for level in [orphans, *known_levels]:
            self._run_parallel([(op, self._remove) for op in level])
        for op in plan.operations:
            if op.kind in {"network", "volume"} and op.action is Action.REMOVE:
                self.report(Event(op.name, REMOVING))
                if op.kind == "network":
                    self.engine.remove_network(op.name)
                else:
                    self.engine.remove_volume(op.name)
                self.report(Event(op.name, REMOVED))
            elif op.kind == "volume":
                self.report(Event(op.name, KEPT, op.cause))

    def _remove(self, op: Operation) -> None:
        self.report(Event(op.service, REMOVING, op.name))
        self.engine.remove_container(self.observed.containers[op.service].id)
        self.report(Event(op.service, REMOVED, op.name))
