"""The only module that calls docker-py: `DockerEngine`, thin and decision-free operations
implementing the `devstack.engine.Engine` protocol.

Errors leave here as devstack errors (see errors.docker_errors)."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterable, Iterator
from typing import Any

import docker
import docker.errors
import docker.types
from docker.utils import parse_repository_tag
from docker.utils.socket import frames_iter_no_tty

from devstack import labels
from devstack.endpoint import DEFAULT_HOST, Endpoint, resolve_endpoint
from devstack.engine import BuildRequest, ContainerState, ExecConnection, ExecSocket
from devstack.errors import DockerApiError, docker_errors
from devstack.observed import ImageUse, Observed, parse_snapshot
from devstack.spec import Service, Stack

# A fixed API version spares a version round trip on every command; 1.41 is Engine 20.10.
# Engines that refuse it are retried once with negotiation (see Engine._negotiated).
API_VERSION = os.environ.get("DOCKER_API_VERSION", "1.41")
NANO = 1_000_000_000


class LogStream:
    """A following log stream (bytes chunks) that another thread may close to end it."""

    def __init__(self, raw: Any):
        self._raw = raw

    def __iter__(self) -> Iterator[bytes]:
        with docker_errors("follow container logs"):
            yield from self._raw

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._raw.close()


class DockerEngine:
    """docker-py's low-level client, wrapped in the operations devstack needs."""

    def __init__(self, api: docker.APIClient, endpoint: Endpoint | None = None):
        self.api = api
        self.endpoint = endpoint or Endpoint("default", DEFAULT_HOST)

    @classmethod
    def connect(cls, version: str = API_VERSION) -> DockerEngine:
        """A client for the engine the docker CLI would use here: DOCKER_HOST, DOCKER_CONTEXT,
        the CLI config's current context, or the default socket (see devstack.endpoint)."""
        endpoint = resolve_endpoint()
        with docker_errors("connect"):
            api = docker.APIClient(version=version, timeout=120, **endpoint.client_kwargs)
        return cls(api, endpoint)

    def close(self) -> None:
        self.api.close()

    def _negotiated(self) -> None:
        """Switch to a negotiated API version (one round trip) after a version refusal."""
        with docker_errors("negotiate the API version"):
            self.api = docker.APIClient(version="auto", timeout=120, **self.endpoint.client_kwargs)

    # --- reading ---------------------------------------------------------------------------
    def snapshot(self, project: str, images: Iterable[str] = ()) -> Observed:
        """Everything of `project`, in one pass of sparse listings (no per-container inspect),
        plus the ids of the `images` references that exist locally."""
        try:
            return self._snapshot(project, images)
        except DockerApiError as exc:
            if "client version" not in exc.message:
                raise
            self._negotiated()
            return self._snapshot(project, images)

    def _snapshot(self, project: str, images: Iterable[str]) -> Observed:
        query = labels.project_filter(project)
        with docker_errors("list resources"):
            containers = self.api.containers(all=True, filters=query)
            networks = self.api.networks(filters=query)
            volumes = self.api.volumes(filters=query).get("Volumes") or []
            wanted = list(images)
            image_rows = [row for ref in wanted if (row := self._image(ref))]
            replaced = {
                ref: self._image_use(ref)
                for ref in sorted({c.get("Image", "") for c in containers} - set(wanted))
                if ref
            }
        return parse_snapshot(project, containers, networks, volumes, image_rows, replaced)

    def _image_use(self, reference: str) -> ImageUse:
        """Whether devstack built `reference`, and every container (any project) made from it."""
        try:
            image = self.api.inspect_image(reference)
        except docker.errors.ImageNotFound:
            return ImageUse(built_by_devstack=False, users=frozenset())
        built = labels.BUILD_HASH in ((image.get("Config") or {}).get("Labels") or {})
        rows = self.api.containers(all=True, filters={"ancestor": image["Id"]})
        return ImageUse(built, frozenset((r.get("Names") or ["/?"])[0].lstrip("/") for r in rows))

    def _image(self, reference: str) -> dict[str, Any] | None:
        """`{"Id", "RepoTags": [reference]}` for a local image, None when absent."""
        try:
            image = self.api.inspect_image(reference)
        except docker.errors.ImageNotFound:
            return None
        return {"Id": image["Id"], "RepoTags": [reference]}

    def state(self, container: str) -> ContainerState:
        with docker_errors("inspect a container"):
            data = self.api.inspect_container(container)["State"]
        health = data.get("Health") or {}
        log = health.get("Log") or []
        return ContainerState(
            status=data.get("Status", ""),
            exit_code=int(data.get("ExitCode") or 0),
            health=health.get("Status", ""),
            health_output=(log[-1].get("Output") or "").strip() if log else "",
        )

    def logs(self, container: str, tail: int = 20) -> str:
        with docker_errors("read container logs"):
            raw: bytes = self.api.logs(container, tail=tail)
        return raw.decode(errors="replace").rstrip()

    def read_logs(self, container: str, tail: int | None, since: float | None) -> bytes:
        """A container's output so far, each line prefixed by its RFC 3339 timestamp."""
        with docker_errors("read container logs"):
            raw: bytes = self.api.logs(
                container, timestamps=True, tail="all" if tail is None else tail, since=since
            )
        return raw

    def follow_logs(self, container: str, tail: int | None, since: float | None) -> LogStream:
        """A following stream of timestamped output; it ends when the container stops."""
        with docker_errors("follow container logs"):
            raw = self.api.logs(
                container,
                stream=True,
                follow=True,
                timestamps=True,
                tail="all" if tail is None else tail,
                since=since,
            )
        return LogStream(raw)

    def is_running(self, container: str) -> bool:
        """Whether a container by this name or id exists and runs."""
        try:
            return self.state(container).status == "running"
        except DockerApiError as exc:
            if exc.status == DockerApiError.NOT_FOUND:
                return False
            raise

    def exec_create(
        self,
        container: str,
        argv: list[str],
        tty: bool,
        stdin: bool,
        environment: list[str] | None = None,
    ) -> str:
        with docker_errors("create an exec"):
            created = self.api.exec_create(
                container, argv, stdin=stdin, tty=tty, environment=environment
            )
        return str(created["Id"])

    def exec_start(self, exec_id: str, tty: bool) -> ExecConnection:
        """Start an exec; its connection carries the output (multiplexed unless tty)."""
        with docker_errors("start an exec"):
            wrapped = self.api.exec_start(exec_id, tty=tty, socket=True)
        sock: socket.socket = getattr(wrapped, "_sock", wrapped)
        sock.settimeout(None)
        wrapper = ExecSocket(sock)

        def frames() -> Iterator[tuple[int, bytes]]:
            with docker_errors("read a command's output"):
                yield from frames_iter_no_tty(wrapper)

        return ExecConnection(wrapper, wrapped, frames)

    def exec_resize(self, exec_id: str, height: int, width: int) -> None:
        with docker_errors("resize an exec's terminal"):
            self.api.exec_resize(exec_id, height=height, width=width)

    def exec_exit_code(self, exec_id: str) -> int | None:
        """The exec's exit code; None while it still runs."""
        with docker_errors("inspect an exec"):
            data = self.api.exec_inspect(exec_id)
        code = data.get("ExitCode")
        return None if data.get("Running") or code is None else int(code)

    def exec_run(self, container: str, argv: list[str]) -> tuple[int, str]:
        """Run `argv` to completion in the container: exit code and combined output."""
        exec_id = self.exec_create(container, argv, tty=False, stdin=False)
        with docker_errors("run a command in a container"):
            stream = self.api.exec_start(exec_id, stream=True)
            output = b"".join(chunk for chunk in stream if isinstance(chunk, bytes))
        code = self.exec_exit_code(exec_id)
        return (code if code is not None else -1), output.decode(errors="replace")

    def port_holder(self, port: int) -> str:
        """Which running container (of which project) publishes host `port`."""
        with docker_errors("list containers"):
            rows: list[dict[str, Any]] = self.api.containers()
        for row in rows:
            if any(p.get("PublicPort") == port for p in row.get("Ports") or []):
                name = (row.get("Names") or ["?"])[0].lstrip("/")
                project = (row.get("Labels") or {}).get(labels.PROJECT)
                owner = f" of devstack project {project}" if project else ""
                return f"container {name}{owner}"
        return "another process (not a container)"

    # --- images ----------------------------------------------------------------------------
    def pull(self, reference: str) -> Iterator[dict[str, Any]]:
        repository, tag = parse_repository_tag(reference)
        with docker_errors(f"pull {reference}"):
            yield from self.api.pull(repository, tag=tag or "latest", stream=True, decode=True)

    def build(self, request: BuildRequest) -> Iterator[dict[str, Any]]:
        """Stream a legacy-builder build of `request`'s context."""
        with docker_errors(f"build image {request.tag}"):
            yield from self.api.build(
                fileobj=request.context,
                custom_context=True,
                tag=request.tag,
                target=request.target,
                dockerfile=request.dockerfile,
                buildargs=request.args,
                labels=request.labels,
                rm=True,
                forcerm=True,
                decode=True,
            )

    def remove_image_tag(self, reference: str) -> None:
        """Drop a tag, keeping its parent layers (the build cache); ignore if still in use."""
        with contextlib.suppress(docker.errors.APIError):
            self.api.remove_image(reference, noprune=True)

    # --- changing --------------------------------------------------------------------------
    def create_network(self, name: str, project: str) -> None:
        with docker_errors(f"create network {name}"):
            self.api.create_network(name, driver="bridge", labels=labels.resource_labels(project))

    def create_volume(self, name: str, project: str) -> None:
        with docker_errors(f"create volume {name}"):
            self.api.create_volume(name, labels=labels.resource_labels(project))

    def create_container(self, stack: Stack, service: Service, one_off: str = "") -> str:
        """Create (not start) the container for `service`; returns its id. `one_off`: a name
        suffix for a container run once beside the service's own (no published ports)."""
        api = self.api
        ports = () if one_off else service.ports
        held = None if one_off else service.held
        host_config = api.create_host_config(
            cpu_shares=held.cpu_shares if held and held.cpu_shares else None,
            port_bindings={p.container_port: (p.host_ip, p.host_port) for p in ports},
            mounts=[
                docker.types.Mount(m.target, m.source, type=m.kind, read_only=m.read_only)
                for m in service.mounts
            ],
        )
        endpoint = api.create_endpoint_config(aliases=[service.name])
        healthcheck = None
        if service.healthcheck:
            hc = service.healthcheck
            healthcheck = {
                "test": list(hc.test),
                "interval": int(hc.interval * NANO),
                "timeout": int(hc.timeout * NANO),
                "retries": hc.retries,
                "start_period": int(hc.start_period * NANO),
            }
        container_labels = labels.container_labels(
            stack.project, service.name, service.config_fields(), service.config_hash()
        )
        name = stack.container_name(service.name)
        if one_off:
            container_labels[labels.ONE_OFF] = one_off
            name = f"{name}-{one_off}"
        with docker_errors(f"create container for {service.name}"):
            created = api.create_container(
                service.image,
                command=list(service.command) or None,
                name=name,
                environment=dict(service.environment),
                labels=container_labels,
                ports=[p.container_port for p in ports],
                host_config=host_config,
                networking_config=api.create_networking_config({stack.network: endpoint}),
                healthcheck=healthcheck,
                stop_signal=service.stop_signal,
                user=service.user or None,
                working_dir=service.working_dir or None,
                detach=True,
            )
        return str(created["Id"])

    def output(self, container: str) -> LogStream:
        """A following stream of the container's raw output, from its start until it exits."""
        with docker_errors("follow a container's output"):
            return LogStream(self.api.logs(container, stream=True, follow=True))

    def wait(self, container: str) -> int:
        """Block until the container exits; its exit code."""
        with docker_errors("wait for a container"):
            result = self.api.wait(container, timeout=None)
        return int(result.get("StatusCode", -1))

    def start(self, container: str) -> None:
        with docker_errors("start a container"):
            self.api.start(container)

    def restart(self, container: str, timeout: int = 10) -> None:
        with docker_errors("restart a container"):
            self.api.restart(container, timeout=timeout)

    def signal(self, container: str, signal: str) -> None:
        """Send `signal` (e.g. "SIGUSR2") to the container's main process; a container that
        is not running (409) or gone (404) is ignored."""
        try:
            with docker_errors("signal a container"):
                self.api.kill(container, signal=signal)
        except DockerApiError as exc:
            if exc.status not in {DockerApiError.NOT_FOUND, DockerApiError.CONFLICT}:
                raise

    def set_cpu_shares(self, container: str, shares: int) -> None:
        """Change a running container's CPU weight (Docker's cpu_shares; 1024 is the default)."""
        with docker_errors("update a container's CPU weight"):
            self.api.update_container(container, cpu_shares=shares)

    def stop(self, container: str, timeout: int = 10) -> None:
        with docker_errors("stop a container"):
            self.api.stop(container, timeout=timeout)

    def remove_container(self, container: str) -> None:
        """Stop gracefully (the image's stop signal), then remove with its anonymous volumes
        (a recreated container would never see them again; named volumes are kept)."""
        try:
            with docker_errors("remove a container"):
                self.api.stop(container, timeout=10)
                self.api.remove_container(container, v=True)
        except DockerApiError as exc:
            if exc.status != DockerApiError.NOT_FOUND:
                raise

    def remove_network(self, name: str) -> None:
        with docker_errors(f"remove network {name}"):
            self.api.remove_network(name)

    def remove_volume(self, name: str) -> None:
        with docker_errors(f"remove volume {name}"):
            self.api.remove_volume(name)
