"""Which Docker engine devstack talks to, chosen as the docker CLI and Compose choose it:
`DOCKER_HOST`, else the context named by `DOCKER_CONTEXT`, else the Docker CLI config's
`currentContext` (`$DOCKER_CONFIG/config.json`, default `~/.docker/config.json`), else the
default socket. Docker Desktop for Linux, Colima, Rancher Desktop and others register a context
and have no `/var/run/docker.sock`.

Contexts are read through docker-py's context API (`ContextAPI`, `Context`). One gap is filled
here: docker-py looks for the context store next to the config file it finds, falling back to
`~/.docker/config.json` (or none: then a path relative to the working directory) when
`$DOCKER_CONFIG/config.json` does not exist, as after a plain `docker context create`; the CLI
always uses `$DOCKER_CONFIG/contexts`. In that case the store is read here, into docker-py's
`Context`."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from devstack.errors import ConfigError

DEFAULT_CONTEXT = "default"
DEFAULT_HOST = "unix:///var/run/docker.sock"
CONTEXTS_HINT = "`docker context ls` lists the contexts; `docker context use NAME` picks one"


@dataclass(frozen=True)
class Endpoint:
    """Where the engine is and why there. `source`: "DOCKER_HOST", "context" or "default";
    `client_kwargs`: base_url and tls for docker.APIClient."""

    source: str
    host: str
    context: str = DEFAULT_CONTEXT
    client_kwargs: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def is_default(self) -> bool:
        """True when nothing chose an engine: the default socket."""
        return self.source == "default"

    @property
    def remote_host(self) -> str:
        """The engine's host when it is another machine (`tcp://`, `ssh://`, `http(s)://` to
        a host that is not this one's loopback), where its published ports are reached; ""
        for a local engine (a unix socket, a named pipe, or loopback)."""
        return remote_host_of(self.host)

    @property
    def is_ssh(self) -> bool:
        return self.host.startswith("ssh://")

    def describe(self) -> str:
        """E.g. "context colima (unix:///home/me/.colima/default/docker.sock)"."""
        if self.source == "DOCKER_HOST":
            return f"DOCKER_HOST ({self.host})"
        if self.source == "context":
            return f"context {self.context} ({self.host})"
        return f"default ({self.host})"

    def as_json(self) -> dict[str, str]:
        """The endpoint for `status --json`."""
        return {"source": self.source, "context": self.context, "host": self.host}


def remote_host_of(host: str) -> str:
    """The host name or address in a Docker address (`tcp://10.0.0.5:2375`,
    `ssh://me@build-box`, `tcp://[fd00::5]:2376`) when it names another machine; "" otherwise."""
    parts = urlsplit(host)
    if parts.scheme not in {"tcp", "ssh", "http", "https"}:
        return ""
    name = parts.hostname or ""
    if not name or name == "localhost" or name.endswith(".localhost"):
        return ""
    try:
        if ipaddress.ip_address(name).is_loopback:
            return ""
    except ValueError:
        pass  # a host name
    return name


def engine_host() -> str:
    """Where the chosen engine publishes ports, seen from here: its host when it is another
    machine, "" when it is this one (see Endpoint.remote_host)."""
    return resolve_endpoint().remote_host


def resolve_endpoint() -> Endpoint:
    """The engine the docker CLI would use in this environment (see the module docstring).
    A context that is named but does not exist is a ConfigError (exit 2), as is a malformed
    DOCKER_HOST: bad input, found before the engine is touched."""
    plain = _plain_choice()
    if plain is not None:
        return plain
    from docker.errors import DockerException
    from docker.utils import kwargs_from_env

    host = os.environ.get("DOCKER_HOST")
    name, origin = (DEFAULT_CONTEXT, "DOCKER_HOST") if host else _context_name()
    if name == DEFAULT_CONTEXT:
        try:
            kwargs = kwargs_from_env()  # DOCKER_HOST, DOCKER_TLS_VERIFY, DOCKER_CERT_PATH
        except DockerException as exc:
            raise ConfigError(f"Docker TLS settings: {exc}", hint="fix or unset them") from exc
        if not host:
            return Endpoint("default", DEFAULT_HOST, client_kwargs=kwargs)
        _check_host(host, "DOCKER_HOST", "fix or unset DOCKER_HOST")
        return Endpoint("DOCKER_HOST", host, client_kwargs=kwargs)
    context = _load_context(name, origin)
    host = context.Host
    if not host:
        raise ConfigError(
            f"Docker context {name!r} ({origin}) has no Docker endpoint", hint=CONTEXTS_HINT
        )
    _check_host(host, f"Docker context {name!r} ({origin})", CONTEXTS_HINT)
    return Endpoint("context", host, name, client_kwargs=_context_kwargs(name, context))


def _plain_choice() -> Endpoint | None:
    """The common cases, decided without docker-py: no TLS variables and either a `unix://`
    DOCKER_HOST, or no DOCKER_HOST and no context chosen (DOCKER_CONTEXT unset or "default",
    and no `currentContext` other than "default" in the CLI config). None otherwise."""
    if os.environ.get("DOCKER_TLS_VERIFY") is not None or os.environ.get("DOCKER_CERT_PATH"):
        return None
    host = os.environ.get("DOCKER_HOST")
    if host:
        if host.startswith("unix://"):
            return Endpoint("DOCKER_HOST", host, client_kwargs={"base_url": host})
        return None
    if os.environ.get("DOCKER_CONTEXT", DEFAULT_CONTEXT) != DEFAULT_CONTEXT:
        return None
    config = _config_dir() / "config.json"
    if config.is_file():
        try:
            current = json.loads(config.read_text()).get("currentContext")
        except (OSError, ValueError, AttributeError):
            return None  # docker-py's reading of it decides, and reports what is wrong
        if current not in (None, "", DEFAULT_CONTEXT):
            return None
    return Endpoint("default", DEFAULT_HOST)


def _check_host(host: str, subject: str, hint: str) -> None:
    """ConfigError for an address docker-py cannot use (e.g. an unknown scheme)."""
    from docker.errors import DockerException
    from docker.utils import parse_host

    try:
        parse_host(host)
    except DockerException as exc:
        raise ConfigError(f"{subject}: {host!r} is not a Docker address: {exc}", hint=hint) from exc


def _context_kwargs(name: str, context: Any) -> dict[str, Any]:
    """base_url and tls for docker.APIClient, by docker-py's kwargs_from_context when docker-py
    reads the same store as the CLI, else the same made from the context read here."""
    if _docker_py_agrees():
        from docker.context import ContextAPI

        kwargs: dict[str, Any] = ContextAPI.kwargs_from_context(name)
        return kwargs
    made: dict[str, Any] = {"base_url": context.Host}
    if context.TLSConfig is not None:
        made["tls"] = context.TLSConfig
    return made


def _config_dir() -> Path:
    """The Docker CLI's configuration directory."""
    configured = os.environ.get("DOCKER_CONFIG")
    return Path(configured) if configured else Path.home() / ".docker"


def _docker_py_agrees() -> bool:
    """Whether docker-py's context store is the CLI's: it is found next to the config file
    docker-py picks, which is the CLI's own only when `$DOCKER_CONFIG/config.json` exists."""
    from docker.utils.config import find_config_file

    found = find_config_file()
    return found is not None and Path(found) == _config_dir() / "config.json"


def _context_name() -> tuple[str, str]:
    """The context's name and where it was named (for messages)."""
    from docker.context.config import get_current_context_name

    named = os.environ.get("DOCKER_CONTEXT")
    if named:
        return named, "from DOCKER_CONTEXT"
    if not _docker_py_agrees():
        return DEFAULT_CONTEXT, "no Docker CLI config"
    return get_current_context_name(), f"currentContext in {_config_dir() / 'config.json'}"


def _load_context(name: str, origin: str) -> Any:
    """docker-py's Context for `name`; ConfigError when there is no such context."""
    from docker.context import ContextAPI

    try:
        context = ContextAPI.get_context(name) if _docker_py_agrees() else _from_store(name)
    except Exception as exc:  # docker-py raises bare Exception for a corrupted meta file
        raise ConfigError(
            f"Docker context {name!r} ({origin}) cannot be read: {exc}", hint=CONTEXTS_HINT
        ) from exc
    if context is None:
        raise ConfigError(
            f"Docker context {name!r} ({origin}) does not exist in {_config_dir() / 'contexts'}",
            hint=CONTEXTS_HINT,
        )
    return context


def _from_store(name: str) -> Any:
    """docker-py's Context built from the CLI's store (`$DOCKER_CONFIG/contexts`), for when
    docker-py looks elsewhere; None when there is no such context."""
    from docker.context import Context
    from docker.tls import TLSConfig

    store = _config_dir() / "contexts"
    digest = hashlib.sha256(name.encode()).hexdigest()
    meta = store / "meta" / digest / "meta.json"
    if not meta.is_file():
        return None
    data = json.loads(meta.read_text())
    context = Context(data["Name"], endpoints=data.get("Endpoints"))
    tls = _tls_files(store / "tls" / digest / "docker")
    if tls:
        skip = bool(context.endpoints.get("docker", {}).get("SkipTLSVerify"))
        context.tls_cfg = {
            "docker": TLSConfig(
                client_cert=(tls["cert"], tls["key"]),
                ca_cert=tls["ca"],
                verify=None if skip else True,
            )
        }
    return context


def _tls_files(directory: Path) -> dict[str, str]:
    """ca, cert and key of a context's docker endpoint, as the CLI stores them; {} if absent."""
    if not directory.is_dir():
        return {}
    found = {}
    for path in sorted(directory.iterdir()):
        for kind in ("ca", "cert", "key"):
            if path.name.startswith(kind):
                found[kind] = str(path)
    return found if len(found) == 3 else {}
