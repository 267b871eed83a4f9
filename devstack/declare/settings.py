"""devstack's settings: `.env` (plus the process environment, which wins) validated before
anything touches Docker. Every error names the variable and where it came from.

Two kinds of keys: devstack's own (`CORE`: project name, dev mode, bind address, health
checks, timeout, CA bundle, groups), read here; and the keys the project's stack declares
(ports, images, credentials), read through `Env` while `stack.py` runs. Unknown keys with a
checked prefix are reported once the declaration is known (`Env.check`)."""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from devstack.declare.envfile import read_env_file
from devstack.errors import ConfigError

T = TypeVar("T")
PROJECT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
CORE_PREFIX = "DEVSTACK_"  # unknown keys with this prefix (or a declared key's) are typos
TRUE = frozenset({"1", "true", "t", "yes", "y", "on"})
FALSE = frozenset({"0", "false", "f", "no", "n", "off"})


def parse_port(text: str) -> int:
    """A TCP port, 1-65535."""
    return int(_number(text, int, low=1, high=65535))


def _positive(text: str) -> float:
    return _number(text, float, above=0)


def _count(text: str) -> int:
    return int(_number(text, int, low=1))


def _number(
    text: str,
    kind: Callable[[str], float],
    low: float | None = None,
    high: float | None = None,
    above: float | None = None,
) -> float:
    """`text` as an int or float within bounds; ValueError with the reason."""
    try:
        value = kind(text.strip())
    except ValueError:
        noun = "an integer" if kind is int else "a number"
        raise ValueError(f"should be {noun}") from None
    if low is not None and value < low:
        raise ValueError(f"should be greater than or equal to {low}")
    if high is not None and value > high:
        raise ValueError(f"should be less than or equal to {high}")
    if above is not None and value <= above:
        raise ValueError(f"should be greater than {above}")
    return value


def parse_flag(text: str) -> bool:
    """true/false, yes/no, on/off, 1/0 (any case)."""
    lowered = text.strip().lower()
    if lowered in TRUE | FALSE:
        return lowered in TRUE
    raise ValueError("should be true or false")


def parse_text(text: str) -> str:
    """Any non-empty text."""
    if not text:
        raise ValueError("should not be empty")
    return text


def _ip(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ValueError(f"not an IP address: {text!r} (e.g. 127.0.0.1)") from None


def _project(text: str) -> str:
    if text and not PROJECT_NAME.fullmatch(text):
        raise ValueError(
            f"{text!r} is not a valid project name: use lowercase letters, digits, '-' "
            "and '_', starting with a letter or digit (at most 63 characters)"
        )
    return text


def _bundle(text: str) -> Path | None:
    if not text:
        return None
    if not Path(text).is_file():
        raise ValueError(f"no such file: {text}")
    return Path(text)


def _groups(text: str) -> frozenset[str]:
    names = frozenset(part.strip() for part in text.split(",") if part.strip())
    for name in names:
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", name):
            raise ValueError(f"{name!r} is not a group name (lowercase letters, digits, '-')")
    return names


@dataclass(frozen=True)
class Settings:
    """devstack's own validated settings (see CORE), and every raw key of `.env` and the
    environment for the stack's declaration to read through `Env`.
    A plain dataclass, not a pydantic model: every command reads them, and pydantic's
    import and model build cost about 0.1 s per command (`python -X importtime`)."""

    project_dir: Path
    env_file: Path
    project: str = ""
    dev_mode: bool = True
    bind_address: str = "127.0.0.1"
    health_interval: float = 10.0
    health_timeout: float = 5.0
    health_retries: int = 3
    timeout: float = 120.0
    ca_bundle: Path | None = None
    groups: frozenset[str] = frozenset()  # optional groups turned on (DEVSTACK_WITH, --with)
    # the Docker engine's host when it is another machine (DOCKER_HOST=tcp://…, ssh://…, a
    # context): its published ports are reached there; "" for a local engine
    engine_host: str = ""
    file_values: Mapping[str, str] = field(default_factory=dict, repr=False)
    environ: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def is_loopback(self) -> bool:
        return ipaddress.ip_address(self.bind_address).is_loopback

    @property
    def project_name(self) -> str:
        """The explicit DEVSTACK_PROJECT, or one derived from the checkout's absolute path."""
        return self.project or default_project_name(self.project_dir)

    @property
    def probe_host(self) -> str:
        """Where this machine reaches published ports: a wildcard bind on loopback, or on the
        engine's host when the engine is another machine."""
        return reach_host(self.bind_address, self.engine_host)

    def raw(self, key: str) -> tuple[str | None, str]:
        """`key`'s text (the environment wins over the file) and where it came from."""
        if key in self.environ:
            return self.environ[key], "the environment"
        return self.file_values.get(key), str(self.env_file)

    def hint_for(self, key: str) -> str:
        """How to fix `key`, wherever its value came from."""
        if key in self.environ:
            return f"fix or unset {key} in your environment (it overrides {self.env_file})"
        return f"edit {self.env_file}; see .env.example"

    def parse(self, key: str, parse: Callable[[str], T], default: T) -> T:
        """`key` parsed, or `default` when unset; ConfigError naming key and source."""
        text, where = self.raw(key)
        if text is None:
            return default
        try:
            return parse(text)
        except ValueError as exc:
            shown = "PASSWORD" not in key and repr(text) not in str(exc)
            got = f" (got {text!r})" if shown else ""
            raise ConfigError(f"{key} in {where}: {exc}{got}", hint=self.hint_for(key)) from None

    def with_groups(self, groups: frozenset[str] | set[str]) -> Settings:
        """These settings with `groups` turned on as well (`up --with NAME`)."""
        return replace(self, groups=self.groups | frozenset(groups))


REMOTE_BIND = "0.0.0.0"  # the default bind address on a remote engine: reachable from here

# devstack's own variables: the setting each fills and what parses its text.
CORE: dict[str, tuple[str, Callable[[str], Any]]] = {
    "DEVSTACK_PROJECT": ("project", _project),
    "DEVSTACK_DEV_MODE": ("dev_mode", parse_flag),
    "DEVSTACK_BIND_ADDRESS": ("bind_address", _ip),
    "DEVSTACK_HEALTH_INTERVAL": ("health_interval", _positive),
    "DEVSTACK_HEALTH_TIMEOUT": ("health_timeout", _positive),
    "DEVSTACK_HEALTH_RETRIES": ("health_retries", _count),
    "DEVSTACK_TIMEOUT": ("timeout", _positive),
    "DEVSTACK_CA_BUNDLE": ("ca_bundle", _bundle),
    "DEVSTACK_WITH": ("groups", _groups),
}


def probe_host(bind_address: str) -> str:
    """Where the host reaches a port published on `bind_address` (a wildcard: loopback)."""
    if ipaddress.ip_address(bind_address).is_unspecified:
        return "::1" if ":" in bind_address else "127.0.0.1"
    return bind_address


def reach_host(bind_address: str, engine_host: str = "") -> str:
    """Where this machine reaches a port published on `bind_address` by an engine on
    `engine_host` ("" : this machine). A remote engine's wildcard bind is reached at its host;
    its specific address is that address."""
    if engine_host and ipaddress.ip_address(bind_address).is_unspecified:
        return engine_host
    return probe_host(bind_address)


def default_project_name(project_dir: Path) -> str:
    """`<folder>-<6 hex of its absolute path>`: two checkouts in same-named folders differ."""
    resolved = project_dir.resolve()
    stem = re.sub(r"[^a-z0-9_-]+", "-", resolved.name.lower()).strip("-_") or "stack"
    digest = hashlib.sha256(str(resolved).encode()).hexdigest()[:6]
    return f"{stem[:50]}-{digest}"


def load_settings(
    project_dir: Path,
    env_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    engine_host: str = "",
) -> Settings:
    """Read `.env` and the environment and validate devstack's own keys (the stack's keys
    are validated while it is declared: `Env`). `engine_host`: the engine's host when it is
    another machine; there, ports bind to all its addresses unless DEVSTACK_BIND_ADDRESS
    says which, and its loopback (unreachable from here) is refused."""
    env_path = env_file or project_dir / ".env"
    file_values = read_env_file(env_path, required=env_file is not None)
    environ = dict(os.environ if environ is None else environ)
    settings = Settings(
        project_dir=project_dir.resolve(),
        env_file=env_path,
        file_values=file_values,
        environ=environ,
        engine_host=engine_host,
        bind_address=REMOTE_BIND if engine_host else Settings.bind_address,
    )
    values = {
        name: settings.parse(key, parse, getattr(settings, name))
        for key, (name, parse) in CORE.items()
    }
    settings = replace(settings, **values)
    if engine_host and settings.is_loopback:
        key = "DEVSTACK_BIND_ADDRESS"
        raise ConfigError(
            f"{key}={settings.bind_address} ({settings.raw(key)[1]}) publishes the ports on the "
            f"loopback of the Docker engine's host {engine_host}, which this machine cannot "
            "reach",
            hint=f"unset it (ports then bind to all of {engine_host}'s addresses) or set the "
            f"engine's address; {settings.hint_for(key)}",
        )
    return settings


@dataclass(frozen=True)
class Key:
    """A `.env` key the stack declares: its default and whether its value is a secret."""

    name: str
    default: str
    secret: bool = False
    # a secret whose default is only an example: refused when ports leave this machine
    example: bool = False


class Env:
    """What a stack file reads: devstack's settings and the `.env` keys it declares.

    Every `port`, `image`, `text` and `secret` call declares its key (with its default), so
    the unknown-key check, its suggestions and `.env.example`'s test derive from the stack."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.keys: dict[str, Key] = {}
        self.passed_prefixes: list[str] = []
        self.image_keys: dict[str, str] = {}  # image reference -> the key that chose it

    @property
    def project(self) -> str:
        """The project name (prefixes containers, network and volumes)."""
        return self.settings.project_name

    @property
    def dev(self) -> bool:
        """Dev mode (DEVSTACK_DEV_MODE): recipes mount sources, reload and hold starts."""
        return self.settings.dev_mode

    @property
    def project_dir(self) -> Path:
        """The checkout (`--project-dir`)."""
        return self.settings.project_dir

    def volume(self, name: str) -> str:
        """A named volume of this project: `<project>_<name>`."""
        return f"{self.project}_{name}"

    def _declare(
        self, key: str, default: object, secret: bool = False, example: bool = False
    ) -> None:
        self.keys[key] = Key(key, str(default), secret, example)

    def port(self, key: str, default: int) -> int:
        """A host port set by `key` (1-65535; two ports on one host port are refused)."""
        self._declare(key, default)
        return self.settings.parse(key, parse_port, default)

    def text(self, key: str, default: str) -> str:
        """A non-empty text set by `key`."""
        self._declare(key, default)
        return self.settings.parse(key, parse_text, default)

    def image(self, key: str, default: str) -> str:
        """An image reference set by `key` (named when the image cannot be had)."""
        reference = self.text(key, default)
        self.image_keys.setdefault(reference, key)
        return reference

    def flag(self, key: str, default: bool) -> bool:
        """true/false set by `key`."""
        self._declare(key, str(default).lower())
        return self.settings.parse(key, parse_flag, default)

    def secret(self, key: str, default: str, example: bool = True) -> str:
        """A credential set by `key`: masked in output, a Secret in the Kubernetes export;
        while it is the `example` default, binding ports beyond loopback is refused."""
        self._declare(key, default, secret=True, example=example)
        return self.settings.parse(key, parse_text, default)

    def passthrough(self, prefix: str) -> dict[str, str]:
        """Every `<prefix>*` key of `.env` and the environment (the environment wins)."""
        self.passed_prefixes.append(prefix)
        merged = {**self.settings.file_values, **self.settings.environ}
        return {k: v for k, v in sorted(merged.items()) if k.startswith(prefix)}

    def secrets(self) -> dict[str, str]:
        """The declared secrets' values, by key."""
        return {
            k.name: self.settings.parse(k.name, parse_text, k.default)
            for k in self.keys.values()
            if k.secret
        }

    def example_secrets(self) -> tuple[str, ...]:
        """The declared secrets still at their example default."""
        values = self.secrets()
        return tuple(
            k.name for k in self.keys.values() if k.example and values[k.name] == k.default
        )

    def check(self, example: Sequence[str]) -> None:
        """After the declaration: unknown keys (typos), and `example` secrets (those still at
        their example default that the services turned on use) on a public bind."""
        settings = self.settings
        known = {*CORE, *self.keys}
        checked = (CORE_PREFIX, *{k.split("_", 1)[0] + "_" for k in self.keys if "_" in k})
        for key in settings.file_values:
            if key.startswith(tuple(self.passed_prefixes)) or key in known:
                continue
            if key.startswith(checked):
                import difflib  # only for a misspelt key

                close = difflib.get_close_matches(key, sorted(known), n=1)
                hint = f"did you mean {close[0]}?" if close else "see .env.example for valid keys"
                raise ConfigError(f"{settings.env_file}: unknown setting {key}", hint=hint)
        if example and not settings.is_loopback:
            where = (
                f"the Docker engine on {settings.engine_host} publishes the stack on its "
                f"network (DEVSTACK_BIND_ADDRESS={settings.bind_address})"
                if settings.engine_host
                else f"DEVSTACK_BIND_ADDRESS={settings.bind_address} publishes the stack beyond "
                "this machine"
            )
            raise ConfigError(
                f"{settings.env_file} (settings): {where} with the example {example[0]}; set a "
                "real one first",
                hint=settings.hint_for(example[0]),
            )
