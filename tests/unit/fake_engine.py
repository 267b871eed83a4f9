"""An in-memory engine behind the `Engine` protocol, for testing the executor, readiness and
use cases without Docker. Each service has a scripted behaviour: how long after its start it
becomes ready, or when it exits and with which code. Every call is recorded with a timestamp.
A held service's container (spec.Held) runs its program, and so counts those times, only from
its release signal on; released once, it is not held again when (re)started (the marker)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, BinaryIO

from devstack.converge.engine_protocol import BuildRequest, ExecConnection, Stream
from devstack.converge.observed import Observed, parse_snapshot
from devstack.declare import labels
from devstack.declare.checks import CheckTarget, ContainerState, NotReady, ReadinessCheck
from devstack.declare.spec import Service, Stack
from devstack.engine.endpoint import DEFAULT_HOST, Endpoint
from devstack.errors import DockerApiError


@dataclass
class Behaviour:
    """What a service's container does once started."""

    ready_after: float = 0.0
    exit_after: float | None = None  # seconds after start; None: runs until stopped
    exit_code: int = 0
    health: str = ""
    lost_signals: int = 0  # signals dropped (sent before a held service's gate listened)
    stop_code: int = 143  # its exit code after a graceful stop


@dataclass
class FakeContainer:
    id: str
    name: str
    service: Service
    stack: Stack
    behaviour: Behaviour
    started_at: float | None = None
    health: str = ""
    released_at: float | None = None  # a held service's release (its program's start)
    one_off: str = ""
    isolated: bool = False
    starts: int = 0  # Docker makes new network endpoints at every start

    @property
    def endpoint(self) -> str:
        """Its network endpoint's id, as the listing shows it ("" when never started)."""
        return f"ep-{self.id}-{self.starts}" if self.starts else ""

    @property
    def program_started(self) -> float | None:
        """When the program began: at start, or for a held service at its release."""
        return self.started_at if self.service.held is None else self.released_at

    @property
    def subject(self) -> str:
        """What the calls on it are recorded under: its service, and a one-off's suffix."""
        return f"{self.service.name}-{self.one_off}" if self.one_off else self.service.name

    def status(self) -> str:
        if self.started_at is None:
            return "created"
        after, began = self.behaviour.exit_after, self.program_started
        if after is not None and began is not None and time.monotonic() - began >= after:
            return "exited"
        return "running"

    def ready(self) -> bool:
        began = self.program_started
        return (
            began is not None
            and self.status() == "running"
            and time.monotonic() - began >= self.behaviour.ready_after
        )


@dataclass(frozen=True)
class Scripted(ReadinessCheck):
    """Ready when the fake container's behaviour says so."""

    def check(self, target: CheckTarget) -> None:
        engine = target.engine
        assert isinstance(engine, FakeEngine)
        if not engine.containers[target.container].ready():
            raise NotReady("not yet")

    def describe(self) -> str:
        return "scripted"


@dataclass
class FakeEngine:
    """The engine protocol in memory."""

    behaviours: dict[str, Behaviour] = field(default_factory=dict)
    containers: dict[str, FakeContainer] = field(default_factory=dict)
    networks: dict[str, str] = field(default_factory=dict)
    volumes: set[str] = field(default_factory=set)
    images: dict[str, str] = field(default_factory=dict)
    calls: list[tuple[float, str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    archives: dict[str, bytes] = field(default_factory=dict)  # service -> what `archive` reads
    extracted: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # name -> (path, tar)

    def _record(self, call: str, subject: str) -> None:
        with self.lock:
            self.calls.append((time.monotonic(), call, subject))

    def when(self, call: str, subject: str) -> float:
        """When `call` on `subject` first happened (AssertionError if never)."""
        for at, name, what in self.calls:
            if (name, what) == (call, subject):
                return at
        raise AssertionError(f"{call} {subject} never happened: {self.calls}")

    def happened(self, call: str, subject: str) -> bool:
        return any((name, what) == (call, subject) for _, name, what in self.calls)

    def _find(self, container: str) -> FakeContainer:
        for c in self.containers.values():
            if container in {c.id, c.name}:
                return c
        raise DockerApiError(f"no such container {container}", status=DockerApiError.NOT_FOUND)

    endpoint: Endpoint = field(default_factory=lambda: Endpoint("default", DEFAULT_HOST))

    # --- reading ---------------------------------------------------------------------------
    def snapshot(self, project: str, images: Iterable[str] = ()) -> Observed:
        rows = []
        for c in self.containers.values():
            if c.stack.project != project or c.one_off:  # as Docker's rows labelled one-off
                continue
            status = c.status()
            health = f" ({c.health})" if c.health and status == "running" else ""
            rows.append(
                {
                    "Id": c.id,
                    "Names": [f"/{c.name}"],
                    "Image": c.service.image,
                    "ImageID": self.images.get(c.service.image, ""),
                    "State": status,
                    "Status": f"Up 1 second{health}" if status == "running" else "Exited",
                    "Labels": labels.container_labels(
                        project, c.service.name, c.service.config_fields(), c.service.config_hash()
                    ),
                    "Ports": [],
                    "NetworkSettings": {
                        "Networks": {
                            c.stack.network: {
                                "NetworkID": self.networks.get(c.stack.network, ""),
                                "EndpointID": c.endpoint if status == "running" else "",
                            }
                        }
                    },
                }
            )
        image_rows = [{"Id": self.images[r], "RepoTags": [r]} for r in images if r in self.images]
        networks = [{"Name": n, "Id": i} for n, i in self.networks.items()]
        volumes = [{"Name": v} for v in self.volumes]
        return parse_snapshot(project, rows, networks, volumes, image_rows)

    def state(self, container: str) -> ContainerState:
        c = self._find(container)
        status = c.status()
        return ContainerState(
            status,
            c.behaviour.exit_code if status == "exited" else 0,
            c.health,
            "",
        )

    def logs(self, container: str, tail: int = 20) -> str:
        return f"log of {self._find(container).name}"

    def read_logs(self, container: str, tail: int | None, since: float | None) -> bytes:
        return b""

    def follow_logs(self, container: str, tail: int | None, since: float | None) -> Stream:
        raise NotImplementedError

    def is_running(self, container: str) -> bool:
        return self._find(container).status() == "running"

    def port_holder(self, port: int) -> str | None:
        for c in self.containers.values():
            if c.status == "running" and any(p.host_port == port for p in c.service.ports):
                return f"container {c.name}"
        return None

    def addresses(self, project: str, network: str) -> dict[str, str]:
        return {}

    # --- exec ------------------------------------------------------------------------------
    def exec_run(
        self, container: str, argv: list[str], environment: list[str] | None = None
    ) -> tuple[int, str]:
        return (0 if self._find(container).ready() else 1), ""

    def read_file(self, container: str, path: str) -> str | None:
        self._find(container)
        return None

    def exec_create(
        self,
        container: str,
        argv: list[str],
        tty: bool,
        stdin: bool,
        environment: list[str] | None = None,
    ) -> str:
        raise NotImplementedError

    def exec_start(self, exec_id: str, tty: bool) -> ExecConnection:
        raise NotImplementedError

    def exec_resize(self, exec_id: str, height: int, width: int) -> None:
        raise NotImplementedError

    def exec_exit_code(self, exec_id: str) -> int | None:
        raise NotImplementedError

    # --- images ----------------------------------------------------------------------------
    def pull(self, reference: str) -> Iterator[dict[str, Any]]:
        self._record("pull", reference)
        self.images[reference] = f"sha256:{reference}"
        yield {"status": "Downloaded"}

    def build(self, request: BuildRequest) -> Iterator[dict[str, Any]]:
        self._record("build", request.tag)
        yield {"stream": "Step 1/1 : FROM scratch\n"}
        self.images[request.tag] = f"sha256:{request.tag}"

    def remove_image_tag(self, reference: str) -> None:
        self._record("untag", reference)
        self.images.pop(reference, None)

    def image_info(self, reference: str) -> tuple[str, int] | None:
        image = self.images.get(reference)
        return (image, 1) if image else None

    def tag_image(self, image: str, reference: str) -> None:
        self._record("tag", reference)
        self.images[reference] = image

    def image_tags(self, repository: str) -> dict[str, int]:
        return {ref: 0 for ref in self.images if ref.rpartition(":")[0] == repository}

    def container_images(self) -> list[tuple[str, str]]:
        return [(c.stack.project, c.service.image) for c in self.containers.values()]

    # --- changing --------------------------------------------------------------------------
    def create_network(self, name: str, project: str) -> None:
        self._record("create_network", name)
        self.networks[name] = f"net-{name}"

    def create_volume(self, name: str, project: str) -> None:
        self._record("create_volume", name)
        self.volumes.add(name)

    def output(self, container: str) -> Stream:
        raise NotImplementedError

    def wait(self, container: str) -> int:
        raise NotImplementedError

    def create_container(
        self,
        stack: Stack,
        service: Service,
        one_off: str = "",
        isolated: bool = False,
        publish: bool = False,
    ) -> str:
        name = stack.container_name(service.name) + (f"-{one_off}" if one_off else "")
        self._record("create", f"{service.name}-{one_off}" if one_off else service.name)
        container_id = f"id-{name}-{len(self.calls)}"
        behaviour = self.behaviours.get(service.name, Behaviour())
        if one_off:  # its own: a stop must not end the service's container too
            behaviour = replace(behaviour)
        self.containers[container_id] = FakeContainer(
            container_id, name, service, stack, behaviour, one_off=one_off, isolated=isolated
        )
        return container_id

    def archive(self, container: str, path: str) -> Iterator[bytes]:
        c = self._find(container)
        self._record("archive", c.name)
        data = self.archives.get(c.service.name, f"{c.service.name}:{path}".encode())
        yield from (data[i : i + 4] for i in range(0, len(data), 4))

    def extract(self, container: str, path: str, data: BinaryIO) -> None:
        c = self._find(container)
        self._record("extract", c.name)
        self.extracted[c.name] = (path, data.read())

    def start(self, container: str) -> None:
        c = self._find(container)
        self._record("start", c.subject)
        c.started_at = time.monotonic()
        c.starts += 1
        c.health = c.behaviour.health
        if c.released_at is not None:  # released once: the gate's marker lets it run
            c.released_at = c.started_at

    def restart(self, container: str, timeout: int = 10) -> None:
        c = self._find(container)
        self._record("restart", c.service.name)
        c.started_at = time.monotonic()
        c.starts += 1
        if c.released_at is not None:
            c.released_at = c.started_at

    def stop(self, container: str, timeout: int = 10) -> None:
        c = self._find(container)
        self._record("stop", c.subject)
        c.behaviour.exit_after, c.behaviour.exit_code = 0.0, c.behaviour.stop_code
        if c.program_started is None:  # never released: the gate exits on the stop signal
            c.released_at = time.monotonic()

    def api_version(self) -> str:
        return "1.41"

    def set_cpu_shares(self, container: str, shares: int) -> None:
        c = self._find(container)
        self._record("cpu_shares", f"{c.service.name}={shares}")

    def signal(self, container: str, signal: str) -> None:
        c = self._find(container)
        if c.status() != "running":
            return
        self._record("signal", c.service.name)
        if c.behaviour.lost_signals > 0:
            c.behaviour.lost_signals -= 1
            return
        held = c.service.held
        if held is not None and signal == held.signal and c.released_at is None:
            self._record("released", c.service.name)
            c.released_at = time.monotonic()

    def remove_container(self, container: str) -> None:
        try:
            c = self._find(container)
        except DockerApiError:
            return
        self._record("remove", c.service.name)
        del self.containers[c.id]

    def discard_container(self, container: str) -> None:
        try:
            c = self._find(container)
        except DockerApiError:
            return
        self._record("discard", c.subject)
        del self.containers[c.id]

    def remove_network(self, name: str) -> None:
        self._record("remove_network", name)
        self.networks.pop(name, None)

    def remove_volume(self, name: str) -> None:
        self._record("remove_volume", name)
        self.volumes.discard(name)

    def close(self) -> None:
        pass
