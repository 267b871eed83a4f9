"""devstack's settings: `.env` (plus the process environment, which wins) validated into one
immutable object before anything touches Docker. Every error names the variable and its file.
"""

from __future__ import annotations

import difflib
import hashlib
import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from devstack.envfile import read_env_file
from devstack.errors import ConfigError

EXAMPLE_PASSWORD = "devstack-example-password"
PROJECT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
SERVICE_ENV_PREFIX = "AI_AGENTS_"
# Prefixes whose unknown keys in .env are reported as likely typos.
CHECKED_PREFIXES = ("DEVSTACK_", "POSTGRES_")


class Settings(BaseModel):
    """Validated settings. Field aliases are the variable names users write in `.env`."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    project_dir: Path
    env_file: Path
    project: str = Field("", alias="DEVSTACK_PROJECT")
    dev_mode: bool = Field(True, alias="DEVSTACK_DEV_MODE")
    bind_address: str = Field("127.0.0.1", alias="DEVSTACK_BIND_ADDRESS")
    postgres_port: int = Field(5433, alias="DEVSTACK_POSTGRES_PORT", ge=1, le=65535)
    redis_port: int = Field(6379, alias="DEVSTACK_REDIS_PORT", ge=1, le=65535)
    api_port: int = Field(8000, alias="DEVSTACK_API_PORT", ge=1, le=65535)
    postgres_image: str = Field("postgres:17-alpine", alias="DEVSTACK_POSTGRES_IMAGE", min_length=1)
    redis_image: str = Field("redis:7-alpine", alias="DEVSTACK_REDIS_IMAGE", min_length=1)
    python_image: str = Field("python:3.12-slim", alias="DEVSTACK_PYTHON_IMAGE", min_length=1)
    health_interval: float = Field(10.0, alias="DEVSTACK_HEALTH_INTERVAL", gt=0)
    health_timeout: float = Field(5.0, alias="DEVSTACK_HEALTH_TIMEOUT", gt=0)
    health_retries: int = Field(3, alias="DEVSTACK_HEALTH_RETRIES", ge=1)
    timeout: float = Field(120.0, alias="DEVSTACK_TIMEOUT", gt=0)
    ca_bundle: Path | None = Field(None, alias="DEVSTACK_CA_BUNDLE")
    postgres_user: str = Field("devstack", alias="POSTGRES_USER", min_length=1)
    postgres_password: str = Field(EXAMPLE_PASSWORD, alias="POSTGRES_PASSWORD", min_length=1)
    postgres_db: str = Field("devstack", alias="POSTGRES_DB", min_length=1)
    service_env: dict[str, str] = Field(default_factory=dict)

    @field_validator("bind_address")
    @classmethod
    def _ip(cls, value: str) -> str:
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            raise ValueError(f"not an IP address: {value!r} (e.g. 127.0.0.1)") from None

    @field_validator("project")
    @classmethod
    def _project(cls, value: str) -> str:
        if value and not PROJECT_NAME.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a valid project name: use lowercase letters, digits, '-' "
                "and '_', starting with a letter or digit (at most 63 characters)"
            )
        return value

    @field_validator("ca_bundle")
    @classmethod
    def _bundle(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no such file: {value}")
        return value

    @model_validator(mode="after")
    def _cross_checks(self) -> Settings:
        # (clashing host ports are checked on the declared stack: declaration.check_ports)
        if not self.is_loopback and self.postgres_password == EXAMPLE_PASSWORD:
            raise ValueError(
                f"DEVSTACK_BIND_ADDRESS={self.bind_address} publishes Postgres beyond this "
                "machine with the example POSTGRES_PASSWORD; set a real password first"
            )
        return self

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


def default_project_name(project_dir: Path) -> str:
    """`<folder>-<6 hex of its absolute path>`: two checkouts in same-named folders differ."""
    resolved = project_dir.resolve()
    stem = re.sub(r"[^a-z0-9_-]+", "-", resolved.name.lower()).strip("-_") or "stack"
    digest = hashlib.sha256(str(resolved).encode()).hexdigest()[:6]
    return f"{stem[:50]}-{digest}"


def _known_keys() -> set[str]:
    return {f.alias for f in Settings.model_fields.values() if f.alias}


def load_settings(
    project_dir: Path, env_file: Path | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read `.env` and the environment, reject typos and bad values, return Settings."""
    env_path = env_file or project_dir / ".env"
    file_values = read_env_file(env_path, required=env_file is not None)
    environ = os.environ if environ is None else environ
    known = _known_keys()
    for key in file_values:
        if key.startswith(CHECKED_PREFIXES) and key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f"did you mean {close[0]}?" if close else "see .env.example for valid keys"
            raise ConfigError(f"{env_path}: unknown setting {key}", hint=hint)
    merged = {**file_values, **{k: v for k, v in environ.items() if k in known}}
    service_env = {
        k: v
        for source in (file_values, environ)
        for k, v in source.items()
        if k.startswith(SERVICE_ENV_PREFIX)
    }
    data: dict[str, Any] = {k: v for k, v in merged.items() if k in known}
    data.update(project_dir=project_dir.resolve(), env_file=env_path, service_env=service_env)
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise _config_error(exc, env_path, file_values, environ) from None


def _config_error(
    exc: ValidationError, env_path: Path, file_values: Mapping[str, str], environ: Mapping[str, str]
) -> ConfigError:
    error = exc.errors()[0]
    key = str(error["loc"][0]) if error["loc"] else ""
    message = str(error["msg"]).removeprefix("Value error, ")
    if key in environ:
        where = "the environment"
    elif key in file_values:
        where = str(env_path)
    else:
        where = str(env_path) if key else f"{env_path} (settings)"
    subject = f"{key} in {where}" if key else where
    secret = "PASSWORD" in key
    shown = key and "input" in error and not secret and repr(error["input"]) not in message
    got = f" (got {error['input']!r})" if shown else ""
    return ConfigError(f"{subject}: {message}{got}", hint=f"edit {env_path}; see .env.example")
