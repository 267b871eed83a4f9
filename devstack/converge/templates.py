"""Init templates (spec.InitTemplate): a service's first initialisation of its volume (e.g.
Postgres' initdb, its database and init scripts) runs once, in an isolated one-off container on
the first new volume, and a tar of the volume is kept after a graceful stop, in the user's cache
(`$XDG_CACHE_HOME/devstack/templates`, else `~/.cache/...`: shared by every checkout on the
machine, like Docker's build cache). A plan's `seed` step copies it into every later new
volume before the container's first start: the image finds an initialised volume and starts
as it would on an existing one.

A template is keyed by everything that can change what the initialisation writes: the image
id, the environment (passwords included: never shared across them), command, user, working
directory, files and the content of bind mounts (init scripts). A first start or a copy cut
off halfway leaves a marker; the next `up` removes that container and volume and starts over."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from devstack.converge.engine_protocol import Engine
from devstack.converge.readiness import Cancelled, failure_details
from devstack.declare.spec import InitTemplate, Service, Stack
from devstack.errors import DevstackError, DockerApiError, HealthTimeout, ServiceFailed

FORMAT = 1  # bump when what a template holds or how it is keyed changes
MAKER = "init-template"  # the name suffix of the one-off that makes a template
MAKER_INTERVAL = 0.1  # its health check's interval (s): taken as soon as it is complete
POLL = 0.05  # how often the maker's health is read (s)
STOP_TIMEOUT = 60  # a graceful stop of the maker (s) before Docker kills it
KEEP = 5  # templates kept (the most recently used; ~50 MB each for Postgres 17)
SEEDING = "seeding-"  # a marker's prefix: a copy into this volume has not finished


def templates_dir() -> Path | None:
    """Where templates are kept: the user's cache (XDG), not a project's: a fresh clone on
    a machine that made one already starts from it. None without a home directory."""
    try:
        cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    except RuntimeError:  # no HOME and no passwd entry (a bare container)
        return None
    return Path(cache) / "devstack" / "templates"


def inputs_key(service: Service, image_id: str) -> str:
    """The digest of what the initialisation of `service`'s volume can depend on."""
    template = _template(service)
    items = {
        "format": FORMAT,
        "image": image_id,
        "target": template.target,
        "environment": sorted(service.environment),
        "command": service.command,
        "user": service.user,
        "working_dir": service.working_dir,
        "files": sorted((f.path, f.content, f.mode) for f in service.files),
        "mounts": sorted(
            (
                m.target,
                m.kind,
                m.read_only,
                _tree_digest(Path(m.source)) if m.kind == "bind" else m.source,
            )
            for m in service.mounts
            if m.target != template.target
        ),
    }
    return hashlib.sha256(json.dumps(items, sort_keys=True).encode()).hexdigest()[:24]


def _tree_digest(root: Path) -> str:
    """The names, modes and contents below a bind mount's source (a file or a directory)."""
    digest = hashlib.sha256()
    paths = sorted(root.rglob("*")) if root.is_dir() else [root]
    for path in paths:
        try:
            stat = path.lstat()
            digest.update(f"{path.relative_to(root.parent)}\0{stat.st_mode}\0".encode())
            if path.is_symlink():
                digest.update(os.readlink(path).encode())
            elif path.is_file():
                digest.update(path.read_bytes())
        except OSError as exc:  # unreadable: then its error is part of the key
            digest.update(str(exc).encode())
    return digest.hexdigest()


def _template(service: Service) -> InitTemplate:
    assert service.init_template is not None, f"{service.name} declares no init template"
    return service.init_template


@dataclass
class Seeder:
    """Fills new volumes from init templates; where there is none for the service's inputs
    yet, the volume's own first start makes it. `report(service, detail)` tells what takes
    time."""

    engine: Engine
    stack: Stack
    directory: Path
    report: Callable[[str, str], None]
    cancel: threading.Event

    def seed(self, service: Service, container: str, deadline: float) -> None:
        """Fill the new volume of the created, never started `container`: a copy of the
        template, or its first initialisation (kept as the template). Until done, a marker
        names the container, so that an `up` cut off meanwhile is repaired by the next."""
        image = self.engine.image_info(service.image)
        if image is None:
            raise DevstackError(f"{service.name}: its image {service.image} is gone")
        path = self.directory / f"{service.name}-{inputs_key(service, image[0])}.tar"
        marker = self.directory / f"{SEEDING}{service.init_volume}"
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            marker.write_text(self.stack.container_name(service.name))
        except OSError as exc:  # a read-only or full home: the image initialises it
            self.report(service.name, f"no init template ({exc.strerror}: {self.directory})")
            return
        try:
            data = path.open("rb")  # open: a concurrent prune cannot take it away
        except FileNotFoundError:
            self._first_start(service, path, deadline)
        else:
            with data:
                os.utime(path)  # recently used: kept by the prune
                self._copy(service, container, path, data)
        marker.unlink()

    def _copy(self, service: Service, container: str, path: Path, data: BinaryIO) -> None:
        self.report(service.name, f"copying its init template into {service.init_volume}")
        target = PurePosixPath(_template(service).target)
        try:
            self.engine.extract(container, str(target.parent), data)
        except DevstackError as exc:  # e.g. a template cut short on disk: never again
            path.unlink(missing_ok=True)
            raise DevstackError(
                f"{service.name}: its init template could not be copied ({exc.message})",
                hint="run `up` again: it starts that volume over and makes a new template",
            ) from exc

    def _first_start(self, service: Service, path: Path, deadline: float) -> None:
        """Initialise the new volume with the service's own first start, in an isolated
        one-off (not under the service's name on the network, no published port) with a fast
        health check; once healthy, stop it gracefully and keep a copy of the volume."""
        self.report(service.name, "first start, kept as its init template (once)")
        assert service.healthcheck is not None
        fast = replace(service.healthcheck, interval=MAKER_INTERVAL, start_interval=MAKER_INTERVAL)
        name = f"{self.stack.container_name(service.name)}-{MAKER}"
        self.engine.discard_container(name)  # one an interrupted `up` left behind
        maker = replace(service, healthcheck=fast)
        container = self.engine.create_container(self.stack, maker, one_off=MAKER, isolated=True)
        try:
            self.engine.start(container)
            self._until_healthy(service, container, deadline)
            self.engine.stop(container, timeout=STOP_TIMEOUT)
            state = self.engine.state(container)
            if state.exit_code != 0:
                raise ServiceFailed(
                    f"{service.name}: its first start did not stop cleanly for its init "
                    f"template (exit code {state.exit_code})",
                    details=failure_details(self.engine, container),
                )
            try:
                self._keep(path, self.engine.archive(container, _template(service).target))
            except OSError as exc:  # the volume is initialised: only the template is lost
                self.report(service.name, f"init template not kept ({exc.strerror})")
        finally:
            with contextlib.suppress(DevstackError):
                self.engine.discard_container(container)

    def _until_healthy(self, service: Service, container: str, deadline: float) -> None:
        while True:
            if self.cancel.is_set():
                raise Cancelled
            state = self.engine.state(container)
            if state.status in {"exited", "dead"}:
                raise ServiceFailed(
                    f"{service.name}: its first start (for its init template) exited with "
                    f"code {state.exit_code}",
                    details=failure_details(self.engine, container, state.health_output),
                )
            if state.health == "healthy":
                return
            if time.monotonic() > deadline:
                raise HealthTimeout(
                    f"{service.name}: its first start (for its init template) was not healthy "
                    "in time",
                    details=failure_details(self.engine, container, state.health_output),
                )
            self.cancel.wait(POLL)

    def _keep(self, path: Path, chunks: Iterator[bytes]) -> None:
        """Write the template (readable by the user only: it holds password hashes) under a
        name that exists only once it is whole; prune the least recently used."""
        partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
            with os.fdopen(os.open(partial, flags, 0o600), "wb") as f:
                for chunk in chunks:
                    f.write(chunk)
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
        kept = sorted(self.directory.glob("*.tar"), key=_last_used, reverse=True)
        for old in kept[KEEP:]:
            old.unlink(missing_ok=True)


def _last_used(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:  # pruned meanwhile by another `up`
        return 0.0


def repair(engine: Engine, stack: Stack, directory: Path | None) -> list[str]:
    """Remove the container and volume of every filling of this stack's volumes that did not
    finish (an `up` killed halfway): the plan then seeds them again. The volumes repaired."""
    if directory is None:
        return []
    repaired = []
    for volume in stack.volumes:
        marker = directory / f"{SEEDING}{volume}"
        if not marker.exists():
            continue
        container = marker.read_text().strip()
        engine.discard_container(f"{container}-{MAKER}")  # a first start cut off
        engine.discard_container(container)
        try:
            engine.remove_volume(volume)
        except DockerApiError as exc:
            if exc.status != DockerApiError.NOT_FOUND:
                raise
        marker.unlink(missing_ok=True)
        repaired.append(volume)
    return repaired
