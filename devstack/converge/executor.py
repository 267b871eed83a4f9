"""Carry out a plan against the engine. No decisions are made here: the plan says what to do
and in which order (its `after` edges); this module runs every operation whose predecessors
are done, in parallel, with `graphlib.TopologicalSorter` (container creations and starts a
few at a time, the ones most of the plan waits on first: Plan.urgency), and reports progress
as events.

Operations run on daemon threads, not a ThreadPoolExecutor: an interrupted `up` must not wait
at exit for a thread still blocked in an engine call (a build step can take minutes). The first
failure cancels the rest: waits stop at once, running engine calls finish or are abandoned."""

from __future__ import annotations

import contextlib
import heapq
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from graphlib import TopologicalSorter
from pathlib import Path

from devstack.converge.build import build_image
from devstack.converge.engine_protocol import STOP_TIMEOUT_S, Engine
from devstack.converge.plan import Action, Kind, Operation, Plan
from devstack.converge.progress import (
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
from devstack.converge.readiness import Cancelled, wait_ready
from devstack.converge.templates import Seeder
from devstack.declare.spec import DEFAULT_CPU_SHARES, Service, Stack
from devstack.errors import DevstackError, DockerApiError, ImageUnavailable, ResourceConflict

GRACE = 5.0  # seconds a cancelled run waits for its running operations to notice
# container creations, starts and volume fills at once: more only share the machine's cores
# (dockerd, runc, the port proxies) and delay the ones other services wait for. 35 services
# from nothing on 2 cores, 4 runs each: 2: 10.2 s, 3: 9.7 s, 4: 8.9 s, 8: 10.0 s, all: 10.1 s
CONTENDING_AT_ONCE = 4


@dataclass
class RunResult:
    """When each service became ready, in seconds from the start of the run."""

    ready_after: dict[str, float] = field(default_factory=dict)


class Executor:
    """Runs a plan's graph against an engine, reporting progress to `report`. `poll`: check
    readiness at this fixed interval (s) instead of the growing one (the bench's floor).
    `templates`: the init templates' directory (devstack.converge.templates); without it a
    `seed` step does nothing and the image initialises its volume itself."""

    def __init__(
        self,
        engine: Engine,
        stack: Stack,
        report: Reporter,
        cancel: threading.Event | None = None,
        poll: float | None = None,
        templates: Path | None = None,
    ):
        self.engine = engine
        self.stack = stack
        self.report = report
        self.cancel = cancel or threading.Event()
        self.poll = poll
        self.templates = templates  # where init templates are kept; None: none are used
        self.containers: dict[str, str] = {}  # service -> container id (created or observed)

    def run(self, plan: Plan, timeout: float, containers: dict[str, str]) -> RunResult:
        """Run every operation of `plan` once its predecessors are done; raise the first
        failure after cancelling the rest. `containers`: ids of existing containers."""
        self.containers = dict(containers)
        started = time.monotonic()
        deadline = started + timeout
        result = RunResult()
        operations = {op.key: op for op in plan.operations}
        sorter = TopologicalSorter({op.key: op.after for op in plan.operations})
        sorter.prepare()
        finished: queue.Queue[tuple[str, BaseException | None]] = queue.Queue()
        running = 0
        failure: BaseException | None = None
        done: set[str] = set()

        def work(op: Operation) -> None:
            try:
                self._do(op, deadline)
                if op.action in {Action.WAIT, Action.KEEP} and op.kind is Kind.READY:
                    result.ready_after[op.service_name] = time.monotonic() - started
                    detail = f"{result.ready_after[op.service_name]:.1f}s"
                    self.report(Event(op.service_name, HEALTHY, detail))
            except BaseException as exc:  # handed to the main thread
                finished.put((op.key, exc))
            else:
                finished.put((op.key, None))

        rank: dict[str, tuple[int, int]] = {}  # made once an operation contends (not in a no-op)
        queued: list[tuple[tuple[int, int], str]] = []  # contending ones ready, by rank
        contending = 0

        def launch(op: Operation) -> None:
            name = f"devstack-{op.key}"
            threading.Thread(target=work, args=(op,), name=name, daemon=True).start()

        try:
            while sorter.is_active() and failure is None:
                for key in sorter.get_ready():
                    op = operations[key]
                    if _contends(op):
                        rank = rank or _launch_order(plan)
                        heapq.heappush(queued, (rank[key], key))
                        continue
                    running += 1
                    if _inline(op):  # no engine call: a thread would cost more than the op
                        work(op)
                        continue
                    launch(op)
                while queued and contending < CONTENDING_AT_ONCE:
                    running += 1
                    contending += 1
                    launch(operations[heapq.heappop(queued)[1]])
                if running == 0:
                    break
                key, error = finished.get()
                running -= 1
                contending -= _contends(operations[key])
                if error is None:
                    sorter.done(key)
                    done.add(key)
                elif not isinstance(error, Cancelled):
                    failure = error
                    op = operations[key]
                    subject = op.service_name or op.name
                    self.report(Event(subject, FAILED, str(error)))
        except BaseException:  # Ctrl-C or a signal turned into an exception
            self.cancel.set()
            raise
        if failure is not None:
            self.cancel.set()
            self._drain(finished, running)
            self._stop_unreleased(plan, done)
            raise failure
        if sorter.is_active():  # cancelled from outside before everything ran
            self._drain(finished, running)
            raise Cancelled
        return result

    @staticmethod
    def _drain(finished: queue.Queue[tuple[str, BaseException | None]], running: int) -> None:
        """Give the running operations a moment to notice the cancel."""
        deadline = time.monotonic() + GRACE
        while running and time.monotonic() < deadline:
            try:
                finished.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return
            running -= 1

    def _stop_unreleased(self, plan: Plan, done: set[str]) -> None:
        """A failed run stops the held containers it started but never released (e.g. the
        API behind a failed migrations job): none stays up without ever running its program.
        Their gate exits at once on the stop signal."""
        for op in plan.operations:
            if op.action is Action.RELEASE and op.key not in done and op.after[0] in done:
                with contextlib.suppress(DevstackError):
                    self.engine.stop(self.containers[op.service_name], timeout=5)

    # --- one operation ---------------------------------------------------------------------
    def _do(self, op: Operation, deadline: float) -> None:
        if self.cancel.is_set():
            raise Cancelled
        handler = HANDLERS.get((op.action, op.kind))
        if handler is not None:
            handler(self, op, deadline)

    def _build(self, op: Operation, _deadline: float) -> None:
        service = op.service
        assert service is not None and service.build is not None
        # the first service shows the build's progress; the others that run the image say so
        for other in self.stack.services:
            if other.image == op.name and other.name != service.name:
                self.report(
                    Event(
                        other.name,
                        BUILDING,
                        f"its image is being built (progress on {service.name})",
                    )
                )

        def report(step: str) -> None:
            self.report(Event(service.name, BUILDING, step))

        report("sending context")
        build_image(self.engine, service.build, op.name, report, self.cancel, self.stack.project)

    def _pull(self, op: Operation, _deadline: float) -> None:
        subject = op.service_name or op.name
        self.report(Event(subject, PULLING, op.name))

        def status(text: str) -> None:
            if self.cancel.is_set():
                raise Cancelled
            if text:
                self.report(Event(subject, PULLING, f"{op.name}: {text}"))

        pull_image(self.engine, op.name, status, dict(self.stack.image_settings).get(op.name, ""))

    def _create_network(self, op: Operation, _deadline: float) -> None:
        self.engine.create_network(op.name, self.stack.project)

    def _create_volume(self, op: Operation, _deadline: float) -> None:
        self.engine.create_volume(op.name, self.stack.project)

    def _create_container(self, op: Operation, _deadline: float) -> None:
        service = op.service
        assert service is not None
        current = self.containers.get(service.name)
        if op.action is Action.RECREATE and current:
            self.report(Event(service.name, REMOVING, op.cause))
            if note := _stop(service, partial(self.engine.remove_container, current)):
                self.report(Event(service.name, REMOVING, note))
        self.report(Event(service.name, CREATING, op.cause))
        try:
            self.containers[service.name] = self.engine.create_container(self.stack, service)
        except DockerApiError as exc:
            if exc.status == DockerApiError.CONFLICT:
                raise ResourceConflict(
                    f"a container named {op.name} exists but is not part of project "
                    f"{self.stack.project}",
                    hint="remove or rename it (`docker rm -f NAME`) or set DEVSTACK_PROJECT",
                ) from exc
            raise

    def _seed(self, op: Operation, deadline: float) -> None:
        service = op.service
        assert service is not None
        if self.templates is None:
            return

        def report(subject: str, detail: str) -> None:
            self.report(Event(subject, CREATING, detail))

        seeder = Seeder(self.engine, self.stack, self.templates, report, self.cancel)
        seeder.seed(service, self.containers[service.name], deadline)

    def _start(self, op: Operation, _deadline: float) -> None:
        self.report(Event(op.service_name, STARTING))
        self.engine.start(self.containers[op.service_name])

    def _restart(self, op: Operation, _deadline: float) -> None:
        self.report(Event(op.service_name, STARTING, "restarting"))
        restart = partial(self.engine.restart, self.containers[op.service_name])
        if note := _stop(op.service, restart):
            self.report(Event(op.service_name, STARTING, note))

    def _release(self, op: Operation, _deadline: float) -> None:
        service = op.service
        assert service is not None and service.held is not None
        self.report(Event(service.name, STARTING, f"released ({op.cause})"))
        container = self.containers[service.name]
        self.engine.signal(container, service.held.signal)
        self._full_weight(service, container)

    def _full_weight(self, service: Service, container: str) -> None:
        """A released program runs at Docker's default CPU weight, not the held one."""
        if service.held and service.held.cpu_shares:
            with contextlib.suppress(DevstackError):  # an optimization only
                self.engine.set_cpu_shares(container, DEFAULT_CPU_SHARES)

    def _wait(self, op: Operation, deadline: float) -> None:
        service = op.service
        assert service is not None
        container = self.containers[service.name]
        self.report(Event(service.name, WAITING, "checking"))
        wait_ready(
            self.engine,
            container,
            service,
            deadline,
            self.cancel,
            lambda seen: self.report(Event(service.name, WAITING, seen)),
            fresh=op.fresh,
            # a signal sent before the gate listened is lost: re-sent until ready (a ready
            # op comes after the service's dependencies, so after its release's too)
            release=service.held.signal if service.held else None,
            interval=self.poll,
        )
        if service.held and not op.fresh:
            # a kept container may have been released by the re-sent signal, not by this
            # run's release (an interrupted `up` left it held): whoever released it, it runs
            # at full weight from now on
            self._full_weight(service, self.containers[service.name])

    def _drop_image(self, op: Operation, _deadline: float) -> None:
        self.engine.remove_image_tag(op.name)

    def _remove_container(self, op: Operation, _deadline: float) -> None:
        subject = op.service_name or op.name
        self.report(Event(subject, REMOVING, op.name))
        note = _stop(op.service, partial(self.engine.remove_container, op.name))
        self.report(Event(subject, REMOVED, note or op.name))

    def _discard_container(self, op: Operation, _deadline: float) -> None:
        subject = op.service_name or op.name
        self.report(Event(subject, REMOVING, op.cause))
        self.engine.discard_container(op.name)
        self.report(Event(subject, REMOVED, op.name))

    def _remove_network(self, op: Operation, _deadline: float) -> None:
        self.report(Event(op.name, REMOVING))
        self.engine.remove_network(op.name)
        self.report(Event(op.name, REMOVED))

    def _remove_volume(self, op: Operation, _deadline: float) -> None:
        self.report(Event(op.name, REMOVING))
        self.engine.remove_volume(op.name)
        self.report(Event(op.name, REMOVED))

    def _keep_volume(self, op: Operation, _deadline: float) -> None:
        self.report(Event(op.name, KEPT, op.cause))


def pull_image(
    engine: Engine,
    reference: str,
    status: Callable[[str], None] = lambda _: None,
    setting: str = "",
) -> None:
    """Pull `reference`, passing each chunk's progress status ("" if none) to `status`
    (which may raise to stop); ImageUnavailable when the engine cannot (no registry
    reachable, no such image), its hint naming the `.env` key that chose the image."""
    try:
        for chunk in engine.pull(reference):
            if "error" in chunk:
                raise DockerApiError(str(chunk["error"]))
            status(str(chunk.get("status", "")))
    except DockerApiError as exc:
        raise ImageUnavailable(
            f"image {reference} is not on this machine and cannot be pulled "
            f"({exc.message.splitlines()[0][-160:]})",
            hint=(
                f"set {setting} in .env to an image this machine has (`docker images`)"
                if setting
                else f"put {reference} on this machine (`docker load`)"
            )
            + ", or let Docker reach its registry (README: Offline / air-gapped hosts)",
        ) from exc


def _stop(service: Service | None, stop: Callable[[], None]) -> str:
    """Run `stop` (a graceful stop of `service`'s container, then whatever follows it); what
    to say when it ran into Docker's stop timeout: the program ignored its stop signal and
    was killed. "" for a stop that ended in time."""
    started = time.monotonic()
    stop()
    if service is None or time.monotonic() - started < STOP_TIMEOUT_S - 0.5:
        return ""
    signal = service.stop_signal or "SIGTERM"
    fix = "a stop_signal it handles" if service.init else "init=True in stack.py"
    return (
        f"did not stop within {STOP_TIMEOUT_S} s of {signal} and was killed: its main process "
        f"ignores it (as PID 1 without a handler); {fix} stops it at once"
    )


def _contends(op: Operation) -> bool:
    """Whether `op` is short engine work that competes for the engine's and the machine's
    CPU with the others of its kind (making and starting containers, filling volumes): at
    most CONTENDING_AT_ONCE run at once, the most urgent first. Builds, pulls, waits,
    removals and recreations (mostly waiting for a program to stop) are not held back."""
    return op.action in {Action.CREATE, Action.SEED, Action.START} and op.kind in {
        Kind.CONTAINER,
        Kind.VOLUME,
        Kind.START,
    }


def _launch_order(plan: Plan) -> dict[str, tuple[int, int]]:
    """Each operation's place among contending ones ready at once: the most urgent first
    (Plan.urgency), then the plan's order."""
    urgency = plan.urgency()
    return {op.key: (-urgency[op.key], index) for index, op in enumerate(plan.operations)}


def _inline(op: Operation) -> bool:
    """Whether `op` makes no engine call (kept resources, a ready step Docker vouches for)."""
    return op.action is Action.KEEP


Handler = Callable[[Executor, Operation, float], None]

HANDLERS: dict[tuple[Action, Kind], Handler] = {
    (Action.BUILD, Kind.IMAGE): Executor._build,
    (Action.PULL, Kind.IMAGE): Executor._pull,
    (Action.REMOVE, Kind.IMAGE): Executor._drop_image,
    (Action.CREATE, Kind.NETWORK): Executor._create_network,
    (Action.CREATE, Kind.VOLUME): Executor._create_volume,
    (Action.CREATE, Kind.CONTAINER): Executor._create_container,
    (Action.RECREATE, Kind.CONTAINER): Executor._create_container,
    (Action.SEED, Kind.VOLUME): Executor._seed,
    (Action.START, Kind.START): Executor._start,
    (Action.RESTART, Kind.CONTAINER): Executor._restart,
    (Action.RELEASE, Kind.RELEASE): Executor._release,
    (Action.WAIT, Kind.READY): Executor._wait,
    (Action.REMOVE, Kind.CONTAINER): Executor._remove_container,
    (Action.DISCARD, Kind.CONTAINER): Executor._discard_container,
    (Action.REMOVE, Kind.NETWORK): Executor._remove_network,
    (Action.REMOVE, Kind.VOLUME): Executor._remove_volume,
    (Action.KEEP, Kind.VOLUME): Executor._keep_volume,
}
