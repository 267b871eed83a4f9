"""The engine protocol: every operation devstack needs from a container engine, as plain data.

`devstack.engine.docker.DockerEngine` implements it on docker-py (the only docker-py caller);
the unit tests implement it in memory, so the executor, readiness and use cases run without
Docker."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

from devstack.converge.observed import Observed
from devstack.declare.checks import ContainerState
from devstack.declare.spec import Service, Stack

if TYPE_CHECKING:  # the engine layer's types; this protocol only names them
    from devstack.engine.endpoint import Endpoint
    from devstack.engine.socket import ExecSocket


STOP_TIMEOUT_S = 10  # a graceful stop's wait for the program, then SIGKILL (Docker's)


@dataclass(frozen=True)
class ExecConnection:
    """An exec's hijacked connection: the socket, the wrapper that keeps it open, and a
    demultiplexer of its output into (stream 1 stdout | 2 stderr, bytes) frames."""

    sock: ExecSocket
    holder: Any
    frames: Callable[[], Iterator[tuple[int, bytes]]]


class Stream(Protocol):
    """A following stream of bytes chunks that another thread may close to end it."""

    def __iter__(self) -> Iterator[bytes]: ...

    def close(self) -> None:
        """End the stream (its iteration stops)."""


@dataclass(frozen=True)
class ContainerEvent:
    """Something that happened to one of a project's containers (Docker's /events)."""

    service: str  # the service label ("" when the container has none)
    action: str  # create | start | die | kill | stop | destroy | health_status: unhealthy ...
    container: str  # its id


class EventStream(Protocol):
    """A following stream of container events that another thread may close to end it."""

    def __iter__(self) -> Iterator[ContainerEvent]: ...

    def close(self) -> None:
        """End the stream (its iteration stops)."""


@dataclass(frozen=True)
class BuildRequest:
    """An image build: the context as a tar, the Dockerfile, target, args, tag and labels."""

    context: Any  # a file object holding the context tar
    dockerfile: str
    target: str
    tag: str
    args: dict[str, str]
    labels: dict[str, str]


class Engine(Protocol):
    """What devstack asks of a container engine."""

    endpoint: Endpoint  # which engine, and how it was chosen

    # --- reading ---------------------------------------------------------------------------

    def snapshot(self, project: str, images: Iterable[str] = ()) -> Observed:
        """Everything of `project`; with `images` (an `up`), also the ids of those that exist
        locally and who uses the images its containers run that are not among them."""

    def state(self, container: str) -> ContainerState:
        """The container's state (DockerApiError 404 when it does not exist)."""

    def logs(self, container: str, tail: int = 20) -> str:
        """The last `tail` lines of output."""

    def read_logs(self, container: str, tail: int | None, since: float | None) -> bytes:
        """Output so far, each line prefixed by its RFC 3339 timestamp."""

    def follow_logs(self, container: str, tail: int | None, since: float | None) -> Stream:
        """A following stream of timestamped output; it ends when the container stops."""

    def is_running(self, container: str) -> bool:
        """Whether a container by this name or id exists and runs."""

    def events(self, project: str) -> EventStream:
        """From now on, every event of the project's containers, as it happens."""

    def port_holder(self, port: int) -> str | None:
        """Which container (of which project) publishes host `port`; None when none does."""

    def addresses(self, project: str, network: str) -> dict[str, str]:
        """IP address -> name of every running container of `project` (one-off runs too)
        attached to `network`: how a server on that network tells the project's own clients."""

    # --- exec ------------------------------------------------------------------------------
    def exec_run(
        self, container: str, argv: list[str], environment: list[str] | None = None
    ) -> tuple[int, str]:
        """Run a command to completion (`environment`: KEY=value it adds): its exit code and
        combined output."""

    def read_file(self, container: str, path: str) -> str | None:
        """A small text file's content, read by the engine (no process in the container);
        None when it does not exist."""

    def exec_create(
        self,
        container: str,
        argv: list[str],
        tty: bool,
        stdin: bool,
        environment: list[str] | None = None,
    ) -> str:
        """Create an exec; returns its id."""

    def exec_start(self, exec_id: str, tty: bool) -> ExecConnection:
        """Start an exec; its connection carries the output (multiplexed unless tty)."""

    def exec_resize(self, exec_id: str, height: int, width: int) -> None:
        """Resize an exec's TTY."""

    def exec_exit_code(self, exec_id: str) -> int | None:
        """The exec's exit code; None while it still runs."""

    # --- images ----------------------------------------------------------------------------
    def pull(self, reference: str) -> Iterator[dict[str, Any]]:
        """Pull an image, streaming the engine's progress chunks."""

    def build(self, request: BuildRequest) -> Iterator[dict[str, Any]]:
        """Build an image, streaming the engine's output chunks (`stream`, `error`)."""

    def remove_image_tag(self, reference: str) -> None:
        """Drop a tag, keeping parent layers (the build cache); ignore if still in use."""

    def image_info(self, reference: str) -> tuple[str, int] | None:
        """(id, number of layers) of a local image, None when there is none by that name."""

    def tag_image(self, image: str, reference: str) -> None:
        """Point the tag `reference` (repository:tag) at `image` (an id), moving it if set."""

    def image_tags(self, repository: str) -> dict[str, int]:
        """Every `repository:tag` reference that exists locally, with the last time its image
        was tagged (Unix seconds; a tag set again counts as new)."""

    def container_images(self) -> list[tuple[str, str]]:
        """(devstack project label or "", image reference it was created from) of every
        container on the engine, running or not."""

    # --- changing --------------------------------------------------------------------------
    def create_network(self, name: str, project: str) -> None:
        """Create the project's bridge network."""

    def create_volume(self, name: str, project: str) -> None:
        """Create a named volume labelled for the project."""

    def create_container(
        self,
        stack: Stack,
        service: Service,
        one_off: str = "",
        isolated: bool = False,
        publish: bool = False,
    ) -> str:
        """Create (not start) the container for `service`; returns its id. `one_off`: a name
        suffix for a container run once beside the service's own (no published ports unless
        `publish`: host port 0 is one the engine picks); `isolated`: without the service's
        name on the network (none of the stack's services reaches it)."""

    def archive(self, container: str, path: str) -> Iterator[bytes]:
        """A tar stream of `path` in a container (running or not), volumes included; its
        top entry is `path`'s base name."""

    def extract(self, container: str, path: str, data: BinaryIO) -> None:
        """Extract the tar `data` into the directory `path` of a container (running or
        not; into the volumes mounted below it too), keeping the archive's owners."""

    def output(self, container: str) -> Stream:
        """A following stream of the container's raw output, from its start until it exits."""

    def wait(self, container: str) -> int:
        """Block until the container exits; its exit code."""

    def start(self, container: str) -> None:
        """Start a created or stopped container."""

    def restart(self, container: str, timeout: int = STOP_TIMEOUT_S) -> None:
        """Restart a container (graceful stop first)."""

    def stop(self, container: str, timeout: int = STOP_TIMEOUT_S) -> None:
        """Stop a container gracefully (SIGKILL after `timeout` s)."""

    def api_version(self) -> str:
        """The engine's Engine API version, e.g. "1.45"."""

    def set_cpu_shares(self, container: str, shares: int) -> None:
        """Change a container's CPU weight (Docker's cpu_shares; 1024 is the default)."""

    def signal(self, container: str, signal: str) -> None:
        """Send `signal` ("SIGUSR2") to its main process; not running or gone is ignored."""

    def remove_container(self, container: str) -> None:
        """Stop gracefully, then remove with its anonymous volumes; absent is fine."""

    def discard_container(self, container: str) -> None:
        """Kill and remove at once, with its anonymous volumes; absent is fine."""

    def remove_network(self, name: str) -> None:
        """Remove a network."""

    def remove_volume(self, name: str) -> None:
        """Remove a volume."""

    def close(self) -> None:
        """Release the connection."""
