"""devstack's settings: `.env` (plus the process environment, which wins) validated into one
immutable object before anything touches Docker. Every error names the variable and its file.
"""

from __future__ import annotations

import difflib
import hashlib
import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack.envfile import read_env_file
from devstack.errors import ConfigError

EXAMPLE_PASSWORD = "devstack-example-password"
PROJECT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
SERVICE_ENV_PREFIX = "AI_AGENTS_"
# Prefixes whose unknown keys in .env are reported as likely typos.
CHECKED_PREFIXES = ("DEVSTACK_", "POSTGRES_")
TRUE = frozenset({"1", "true", "t", "yes", "y", "on"})
FALSE = frozenset({"0", "false", "f", "no", "n", "off"})


def _port(text: str) -> int:
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


def _flag(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in TRUE | FALSE:
        return lowered in TRUE
    raise ValueError("should be true or false")


def _text(text: str) -> str:
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


@dataclass(frozen=True)
class Settings:
    """Validated settings (see VARIABLES for the names users write in `.env`).
    A plain dataclass, not a pydantic model: every command reads them, and pydantic's
    import and model build cost about 0.1 s per command (`python -X importtime`)."""

    project_dir: Path
    env_file: Path
    project: str = ""
    dev_mode: bool = True
    bind_address: str = "127.0.0.1"
    postgres_port: int = 5433
    redis_port: int = 6379
    api_port: int = 8000
    postgres_image: str = "postgres:17-alpine"
    redis_image: str = "redis:7-alpine"
    python_image: str = "python:3.12-slim"
    health_interval: float = 10.0
    health_timeout: float = 5.0
    health_retries: int = 3
    timeout: float = 120.0
    ca_bundle: Path | None = None
    postgres_user: str = "devstack"
    postgres_password: str = EXAMPLE_PASSWORD
    postgres_db: str = "devstack"
    service_env: Mapping[str, str] = field(default_factory=dict)

    def check(self) -> None:
        """Checks across settings; ValueError with the reason. (Clashing host ports are
        checked on the declared stack: declaration.check_ports.)"""
        if not self.is_loopback and self.postgres_password == EXAMPLE_PASSWORD:
            raise ValueError(
                f"DEVSTACK_BIND_ADDRESS={self.bind_address} publishes Postgres beyond this "
                "machine with the example POSTGRES_PASSWORD; set a real password first"
            )

    @property
    def is_loopback(self) -> bool:
        return ipaddress.ip_address(self.bind_address).is_loopback

    @property
    def project_name(self) -> str:
        """The explicit DEVSTACK_PROJECT, or one derived from the checkout's absolute path."""
        return self.project or default_project_name(self.project_dir)

    @property
    def probe_host(self) -> str:
        """Where the host reaches published ports (a wildcard bind is reached on loopback)."""
        if ipaddress.ip_address(self.bind_address).is_unspecified:
            return "::1" if ":" in self.bind_address else "127.0.0.1"
        return self.bind_address


# Each variable users write in `.env` (or the environment): the setting it fills, and what turns
# its text into the value or raises ValueError saying what is wrong.
VARIABLES: dict[str, tuple[str, Callable[[str], Any]]] = {
    "DEVSTACK_PROJECT": ("project", _project),
    "DEVSTACK_DEV_MODE": ("dev_mode", _flag),
    "DEVSTACK_BIND_ADDRESS": ("bind_address", _ip),
    "DEVSTACK_POSTGRES_PORT": ("postgres_port", _port),
    "DEVSTACK_REDIS_PORT": ("redis_port", _port),
    "DEVSTACK_API_PORT": ("api_port", _port),
    "DEVSTACK_POSTGRES_IMAGE": ("postgres_image", _text),
    "DEVSTACK_REDIS_IMAGE": ("redis_image", _text),
    "DEVSTACK_PYTHON_IMAGE": ("python_image", _text),
    "DEVSTACK_HEALTH_INTERVAL": ("health_interval", _positive),
    "DEVSTACK_HEALTH_TIMEOUT": ("health_timeout", _positive),
    "DEVSTACK_HEALTH_RETRIES": ("health_retries", _count),
    "DEVSTACK_TIMEOUT": ("timeout", _positive),
    "DEVSTACK_CA_BUNDLE": ("ca_bundle", _bundle),
    "POSTGRES_USER": ("postgres_user", _text),
    "POSTGRES_PASSWORD": ("postgres_password", _text),
    "POSTGRES_DB": ("postgres_db", _text),
}


def default_project_name(project_dir: Path) -> str:
    """`<folder>-<6 hex of its absolute path>`: two checkouts in same-named folders differ."""
    resolved = project_dir.resolve()
    stem = re.sub(r"[^a-z0-9_-]+", "-", resolved.name.lower()).strip("-_") or "stack"
    digest = hashlib.sha256(str(resolved).encode()).hexdigest()[:6]
    return f"{stem[:50]}-{digest}"


def load_settings(
    project_dir: Path, env_file: Path | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read `.env` and the environment, reject typos and bad values, return Settings."""
    env_path = env_file or project_dir / ".env"
    file_values = read_env_file(env_path, required=env_file is not None)
    environ = os.environ if environ is None else environ
    for key in file_values:
        if key.startswith(CHECKED_PREFIXES) and key not in VARIABLES:
            close = difflib.get_close_matches(key, sorted(VARIABLES), n=1)
            hint = f"did you mean {close[0]}?" if close else "see .env.example for valid keys"
            raise ConfigError(f"{env_path}: unknown setting {key}", hint=hint)
    hint = f"edit {env_path}; see .env.example"
    values: dict[str, Any] = {}
    for variable, (name, parse) in VARIABLES.items():
        where = "the environment" if variable in environ else str(env_path)
        text = environ.get(variable, file_values.get(variable))
        if text is None:
            continue
        try:
            values[name] = parse(text)
        except ValueError as exc:
            shown = "PASSWORD" not in variable and repr(text) not in str(exc)
            got = f" (got {text!r})" if shown else ""
            raise ConfigError(f"{variable} in {where}: {exc}{got}", hint=hint) from None
    service_env = {
        k: v
        for source in (file_values, environ)
        for k, v in source.items()
        if k.startswith(SERVICE_ENV_PREFIX)
    }
    settings = Settings(
        project_dir=project_dir.resolve(), env_file=env_path, service_env=service_env, **values
    )
    try:
        settings.check()
    except ValueError as exc:
        raise ConfigError(f"{env_path} (settings): {exc}", hint=hint) from None
    return settings
