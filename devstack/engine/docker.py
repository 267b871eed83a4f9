"""`DockerEngine`: thin, decision-free operations implementing the Engine protocol
(devstack.converge.engine_protocol). Plain calls go through `_call` (the standard library on a
local unix socket, see devstack.engine.socket; docker-py's session otherwise); streams,
interactive exec, logs and builds through docker-py, imported on first use.

Errors leave here as devstack errors (see devstack.engine.errors)."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import socket
import tarfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO

from devstack.converge.engine_protocol import STOP_TIMEOUT_S, BuildRequest, ExecConnection
from devstack.converge.observed import ImageUse, Observed, container_addresses, parse_snapshot
from devstack.declare import labels
from devstack.declare.checks import ContainerState
from devstack.declare.spec import File, Service, Stack
from devstack.engine.bodies import container_body
from devstack.engine.endpoint import DEFAULT_HOST, Endpoint, resolve_endpoint
from devstack.engine.errors import docker_errors
from devstack.engine.socket import ExecSocket, SocketApi, api_path, refusal, socket_path
from devstack.engine.streams import ContainerEvents, LogStream, demultiplex, read_with_headers
from devstack.errors import DockerApiError, DockerUnavailable

if TYPE_CHECKING:
    import docker


class DockerEngine:
    """The operations devstack needs from a Docker engine. Plain request/response calls go
    over the standard library when the engine is a local unix socket (devstack.engine.socket),
    else through docker-py's session; docker-py itself is imported and connected on first use
    (streams, exec, builds, container creation)."""

    def __init__(self, api: docker.APIClient | None = None, endpoint: Endpoint | None = None):
        self._api = api
        self._api_lock = threading.Lock()
        self._pinged: str | None = None  # the API version a ping reported
        self.endpoint = endpoint or Endpoint("default", DEFAULT_HOST)
        path = socket_path(self.endpoint.host, self.endpoint.client_kwargs)
        self._socket = SocketApi(path) if path else None

    @classmethod
    def connect(cls) -> DockerEngine:
        """An engine for what the docker CLI would use here: DOCKER_HOST, DOCKER_CONTEXT,
        the CLI config's current context, or the default socket (see devstack.engine.endpoint)."""
        return cls(endpoint=resolve_endpoint())

    @property
    def api(self) -> docker.APIClient:
        """docker-py's low-level client, made on first use, at the engine's own API version
        (a ping's, or negotiated: one round trip), so old and new engines are spoken to at a
        version they accept."""
        with self._api_lock:
            if self._api is None:
                import docker

                with docker_errors("connect"):
                    self._api = docker.APIClient(
                        version=self._pinged_version() or "auto",
                        timeout=120,
                        **self._client_kwargs(),
                    )
            return self._api

    def _pinged_version(self) -> str:
        """The API version a ping on the local socket reports, asked once ("" elsewhere, or
        if it does not say): docker-py's own negotiation asks `GET /version`, ~10 ms more."""
        if self._socket is not None and self._pinged is None:
            with docker_errors("read the engine's version"):
                self._pinged = self._socket.api_version()
        return self._pinged or ""

    def _client_kwargs(self) -> dict[str, Any]:
        """docker-py's arguments for this endpoint: `ssh://` goes through the OpenSSH client,
        as the docker CLI does (the user's ~/.ssh/config, agent and known hosts apply; no
        paramiko), which then runs `docker system dial-stdio` on the engine's host."""
        kwargs = dict(self.endpoint.client_kwargs)
        kwargs.setdefault("base_url", self.endpoint.host)
        if self.endpoint.is_ssh:
            if shutil.which("ssh") is None:
                raise DockerUnavailable(
                    f"the Docker engine {self.endpoint.describe()} is reached over ssh, and "
                    "there is no ssh command here",
                    hint="install the OpenSSH client (Debian: `apt-get install openssh-client`)",
                )
            kwargs["use_ssh_client"] = True
        return kwargs

    def close(self) -> None:
        if self._api is not None:
            self._api.close()

    def _call(
        self,
        method: str,
        path: str,
        action: str,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
    ) -> bytes:
        """One plain call (no stream); its body. DockerApiError for the engine's refusals."""
        target = api_path(path, params)
        with docker_errors(action):
            if self._socket is not None:
                status, data = self._socket.call(method, target, body)
            else:
                response = self.api.request(
                    method,
                    f"{self.api.base_url}{target}",
                    data=None if body is None else json.dumps(body),
                    headers={"Content-Type": "application/json"} if body is not None else {},
                    timeout=self.api.timeout,
                )
                status, data = response.status_code, response.content
        if status >= 400:
            raise refusal(status, data, action)
        return data

    def _json(
        self,
        method: str,
        path: str,
        action: str,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
    ) -> Any:
        return json.loads(self._call(method, path, action, params, body) or b"null")

    def _found(self, path: str, action: str, params: Mapping[str, Any] | None = None) -> Any:
        """GET `path`'s JSON; None when the engine answers 404."""
        try:
            return self._json("GET", path, action, params)
        except DockerApiError as exc:
            if exc.status == DockerApiError.NOT_FOUND:
                return None
            raise

    # --- reading ---------------------------------------------------------------------------
    def snapshot(self, project: str, images: Iterable[str] = ()) -> Observed:
        """Everything of `project`, in one pass of sparse listings (no per-container inspect),
        plus the ids of the `images` references that exist locally."""
        query = labels.project_filter(project)
        action = "list resources"
        containers = self._json("GET", "/containers/json", action, {"all": True, "filters": query})
        networks = self._json("GET", "/networks", action, {"filters": query})
        volumes = self._json("GET", "/volumes", action, {"filters": query}).get("Volumes") or []
        wanted = list(dict.fromkeys(images))  # services often share an image
        image_rows = [row for ref in wanted if (row := self._image(ref))]
        # only `up` replaces images; other commands need not ask who uses them
        in_use = {c.get("Image", "") for c in containers} if wanted else set()
        replaced = {ref: self._image_use(ref) for ref in sorted(in_use - set(wanted)) if ref}
        return parse_snapshot(project, containers, networks, volumes, image_rows, replaced)

    def _image_use(self, reference: str) -> ImageUse:
        """Whether devstack built `reference`, and every container (any project) made from it."""
        image = self._found(f"/images/{reference}/json", "inspect an image")
        if image is None:
            return ImageUse(built_by_devstack=False, users=frozenset())
        built = labels.BUILD_HASH in ((image.get("Config") or {}).get("Labels") or {})
        query = {"all": True, "filters": {"ancestor": [image["Id"]]}}
        rows = self._json("GET", "/containers/json", "list containers", query)
        return ImageUse(built, frozenset((r.get("Names") or ["/?"])[0].lstrip("/") for r in rows))

    def _image(self, reference: str) -> dict[str, Any] | None:
        """`{"Id", "RepoTags": [reference]}` for a local image, None when absent."""
        image = self._found(f"/images/{reference}/json", "inspect an image")
        return None if image is None else {"Id": image["Id"], "RepoTags": [reference]}

    def state(self, container: str) -> ContainerState:
        inspected = self._json("GET", f"/containers/{container}/json", "inspect a container")
        data = inspected["State"]
        health = data.get("Health") or {}
        bound = (inspected.get("NetworkSettings") or {}).get("Ports") or {}
        published = sorted(
            (int(key.split("/")[0]), int(binding["HostPort"]))
            for key, bindings in bound.items()
            if key.endswith("/tcp")
            for binding in bindings or []
            if binding.get("HostPort")
        )
        log = health.get("Log") or []
        return ContainerState(
            status=data.get("Status", ""),
            exit_code=int(data.get("ExitCode") or 0),
            health=health.get("Status", ""),
            health_output=(log[-1].get("Output") or "").strip() if log else "",
            published=tuple(dict.fromkeys(published)),
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

    def events(self, project: str) -> ContainerEvents:
        """From now on, every event of the project's containers (one long request)."""
        query = {**labels.project_filter(project), "type": ["container"]}
        with docker_errors("follow engine events"):
            raw = self.api.events(decode=True, filters=query)
        return ContainerEvents(raw)

    def exec_create(
        self,
        container: str,
        argv: list[str],
        tty: bool,
        stdin: bool,
        environment: list[str] | None = None,
    ) -> str:
        body = {
            "Cmd": argv,
            "AttachStdin": stdin,
            "AttachStdout": True,
            "AttachStderr": True,
            "Tty": tty,
            "Env": environment,
        }
        created = self._json("POST", f"/containers/{container}/exec", "create an exec", body=body)
        return str(created["Id"])

    def exec_start(self, exec_id: str, tty: bool) -> ExecConnection:
        """Start an exec; its connection carries the output (multiplexed unless tty)."""
        with docker_errors("start an exec"):
            wrapped = self.api.exec_start(exec_id, tty=tty, socket=True)
        sock: socket.socket = getattr(wrapped, "_sock", wrapped)
        # over ssh the "socket" reads the very buffer http.client peeked into: nothing is lost
        pending = b"" if self.endpoint.is_ssh else read_with_headers(wrapped, sock)
        wrapper = ExecSocket(sock, pending)
        sock.settimeout(None)

        def frames() -> Iterator[tuple[int, bytes]]:
            from docker.utils.socket import frames_iter_no_tty

            with docker_errors("read a command's output"):
                yield from frames_iter_no_tty(wrapper)

        return ExecConnection(wrapper, wrapped, frames)

    def exec_resize(self, exec_id: str, height: int, width: int) -> None:
        with docker_errors("resize an exec's terminal"):
            self.api.exec_resize(exec_id, height=height, width=width)

    def exec_exit_code(self, exec_id: str) -> int | None:
        """The exec's exit code; None while it still runs."""
        data = self._json("GET", f"/exec/{exec_id}/json", "inspect an exec")
        code = data.get("ExitCode")
        return None if data.get("Running") or code is None else int(code)

    def exec_run(
        self, container: str, argv: list[str], environment: list[str] | None = None
    ) -> tuple[int, str]:
        """Run `argv` to completion in the container (`environment`: KEY=value it adds): exit
        code and combined output (the engine streams it as the start call's body and closes
        when the command ends)."""
        exec_id = self.exec_create(container, argv, tty=False, stdin=False, environment=environment)
        action = "run a command in a container"
        raw = self._call("POST", f"/exec/{exec_id}/start", action, body={"Detach": False})
        code = self.exec_exit_code(exec_id)
        return (code if code is not None else -1), demultiplex(raw).decode(errors="replace")

    def read_file(self, container: str, path: str) -> str | None:
        """The file's content from the engine's archive endpoint (one round trip, no exec)."""
        import io
        import tarfile

        action = "read a file in a container"
        try:
            data = self._call("GET", f"/containers/{container}/archive", action, {"path": path})
        except DockerApiError as exc:
            if exc.status == DockerApiError.NOT_FOUND:
                return None
            raise
        with tarfile.open(fileobj=io.BytesIO(data)) as archive:
            member = archive.next()
            content = archive.extractfile(member) if member is not None else None
            return content.read().decode(errors="replace") if content is not None else None

    def port_holder(self, port: int) -> str | None:
        """Which running container (of which project) publishes host `port`; None: none."""
        rows: list[dict[str, Any]] = self._json("GET", "/containers/json", "list containers")
        for row in rows:
            if any(p.get("PublicPort") == port for p in row.get("Ports") or []):
                name = (row.get("Names") or ["?"])[0].lstrip("/")
                project = (row.get("Labels") or {}).get(labels.PROJECT)
                owner = f" of devstack project {project}" if project else ""
                return f"container {name}{owner}"
        return None

    def addresses(self, project: str, network: str) -> dict[str, str]:
        """IP address -> name of every running container of `project` on `network`."""
        query = {"filters": labels.project_filter(project)}
        rows = self._json("GET", "/containers/json", "list containers", query)
        return container_addresses(rows, network)

    # --- images ----------------------------------------------------------------------------
    def pull(self, reference: str) -> Iterator[dict[str, Any]]:
        from docker.utils import parse_repository_tag

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
        with contextlib.suppress(DockerApiError):
            self._call("DELETE", f"/images/{reference}", "remove an image", {"noprune": True})

    def image_info(self, reference: str) -> tuple[str, int] | None:
        """(id, number of layers) of a local image, None when there is none by that name."""
        try:
            with docker_errors(f"inspect image {reference}"):
                found = self.api.inspect_image(reference)
        except DockerApiError as exc:
            if exc.status in {DockerApiError.NOT_FOUND, 400}:  # 400: not an image reference
                return None
            raise
        return str(found["Id"]), len(found.get("RootFS", {}).get("Layers") or ())

    def tag_image(self, image: str, reference: str) -> None:
        """Point the tag `reference` at `image`, moving it if another image has it."""
        from docker.utils import parse_repository_tag

        repository, tag = parse_repository_tag(reference)
        with docker_errors(f"tag image {image} as {reference}"):
            self.api.tag(image, repository, tag=tag or "latest", force=True)

    def image_tags(self, repository: str) -> dict[str, int]:
        """Every `repository:tag` reference that exists locally, with the last time its image
        was tagged (Unix seconds; a tag set again counts as new)."""
        from datetime import UTC, datetime

        with docker_errors(f"list the images of {repository}"):
            found = self.api.images(name=repository)
            tagged: dict[str, int] = {}
            for image in found:
                references = [
                    reference
                    for reference in image.get("RepoTags") or ()
                    if reference.rpartition(":")[0] == repository
                ]
                if not references:
                    continue
                details = self.api.inspect_image(image["Id"])
                when = str((details.get("Metadata") or {}).get("LastTagTime") or "")[:19]
                try:
                    seconds = int(datetime.fromisoformat(when).replace(tzinfo=UTC).timestamp())
                except ValueError:
                    seconds = int(image.get("Created") or 0)
                tagged.update(dict.fromkeys(references, seconds))
        return tagged

    def container_images(self) -> list[tuple[str, str]]:
        """(project label or "", image reference) of every container, running or not."""
        rows = self._json("GET", "/containers/json", "list containers", {"all": True})
        return [
            ((row.get("Labels") or {}).get(labels.PROJECT, ""), str(row.get("Image", "")))
            for row in rows
        ]

    # --- changing --------------------------------------------------------------------------
    def create_network(self, name: str, project: str) -> None:
        body = {"Name": name, "Driver": "bridge", "Labels": labels.resource_labels(project)}
        self._call("POST", "/networks/create", f"create network {name}", body=body)

    def create_volume(self, name: str, project: str) -> None:
        body = {"Name": name, "Labels": labels.resource_labels(project)}
        self._call("POST", "/volumes/create", f"create volume {name}", body=body)

    def api_version(self) -> str:
        """The engine's Engine API version: a ping's on a local socket, else the one
        docker-py negotiated when it connected."""
        return self._pinged_version() or str(self.api.api_version)

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
        `publish`); `isolated`: without the service's name on the network."""
        name, body = container_body(stack, service, one_off, isolated, publish)
        created = self._json(
            "POST",
            "/containers/create",
            f"create container for {service.name}",
            {"name": name},
            body=body,
        )
        container = str(created["Id"])
        if service.files:
            self.put_files(container, service.files)
        return container

    def put_files(self, container: str, files: Sequence[File]) -> None:
        """Write `files` into a created container (a tar archive extracted at /): the image
        reads them when it starts, on a local engine as on a remote one."""
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w") as tar:
            for file in files:
                data = file.content.encode()
                info = tarfile.TarInfo(file.path.lstrip("/"))
                info.size, info.mode, info.mtime = len(data), file.mode, int(time.time())
                tar.addfile(info, io.BytesIO(data))
        with docker_errors("write files into a container"):
            self.api.put_archive(container, "/", archive.getvalue())

    def archive(self, container: str, path: str) -> Iterator[bytes]:
        """A tar stream of `path` in the container (volumes included), read as it comes."""
        with docker_errors(f"read {path} from a container"):
            stream, _stat = self.api.get_archive(container, path, chunk_size=1 << 20)
            yield from stream

    def extract(self, container: str, path: str, data: BinaryIO) -> None:
        """Extract the tar `data` into `path` of the container; the archive's owners are
        kept (no copyUIDGID)."""
        with docker_errors(f"write {path} into a container"):
            self.api.put_archive(container, path, data)

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
        self._call("POST", f"/containers/{container}/start", "start a container")

    def restart(self, container: str, timeout: int = STOP_TIMEOUT_S) -> None:
        params = {"t": timeout}
        self._call("POST", f"/containers/{container}/restart", "restart a container", params)

    def signal(self, container: str, signal: str) -> None:
        """Send `signal` (e.g. "SIGUSR2") to the container's main process; a container that
        is not running (409) or gone (404) is ignored."""
        try:
            params = {"signal": signal}
            self._call("POST", f"/containers/{container}/kill", "signal a container", params)
        except DockerApiError as exc:
            if exc.status not in {DockerApiError.NOT_FOUND, DockerApiError.CONFLICT}:
                raise

    def set_cpu_shares(self, container: str, shares: int) -> None:
        """Change a running container's CPU weight (Docker's cpu_shares; 1024 is the default)."""
        action = "update a container's CPU weight"
        self._call("POST", f"/containers/{container}/update", action, body={"CpuShares": shares})

    def stop(self, container: str, timeout: int = STOP_TIMEOUT_S) -> None:
        self._call("POST", f"/containers/{container}/stop", "stop a container", {"t": timeout})

    def remove_container(self, container: str) -> None:
        """Stop gracefully (the image's stop signal), then remove with its anonymous volumes
        (a recreated container would never see them again; named volumes are kept)."""
        try:
            self.stop(container)
            self._call("DELETE", f"/containers/{container}", "remove a container", {"v": True})
        except DockerApiError as exc:
            if exc.status != DockerApiError.NOT_FOUND:
                raise

    def discard_container(self, container: str) -> None:
        """Kill (no graceful stop) and remove, with its anonymous volumes, in one call."""
        params = {"force": True, "v": True}
        try:
            self._call("DELETE", f"/containers/{container}", "remove a container", params)
        except DockerApiError as exc:
            if exc.status != DockerApiError.NOT_FOUND:
                raise

    def remove_network(self, name: str) -> None:
        self._call("DELETE", f"/networks/{name}", f"remove network {name}")

    def remove_volume(self, name: str) -> None:
        self._call("DELETE", f"/volumes/{name}", f"remove volume {name}")
