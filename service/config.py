"""Service configuration: ``AI_AGENTS_*`` environment variables, validated once at start-up."""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import SplitResult, unquote, urlsplit

from pydantic import BeforeValidator, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "AI_AGENTS_"

_POSTGRES_SCHEMES = {"postgresql", "postgres", "postgresql+asyncpg"}
_REDIS_SCHEMES = {"redis", "rediss"}
RESULT_BACKEND_DB = 2  # Celery results, unless AI_AGENTS_CELERY_RESULT_BACKEND says otherwise


def _lower(value: object) -> object:
    """Accept ``INFO`` as well as ``info`` for enum-like settings."""
    return value.strip().lower() if isinstance(value, str) else value


LogLevel = Annotated[Literal["debug", "info", "warning", "error"], BeforeValidator(_lower)]
Environment = Annotated[Literal["development", "staging", "production"], BeforeValidator(_lower)]


def _check_port(parts: SplitResult) -> None:
    """Reject a malformed port without echoing it (it may be part of a mistyped password)."""
    try:
        _ = parts.port
    except ValueError:
        raise ValueError(
            "malformed host:port (special characters in the password must be %-encoded)"
        ) from None


def _redis_db(parts: SplitResult) -> int:
    """The database number in a Redis URL path (``/1`` -> 1; none means 0)."""
    path = parts.path.strip("/")
    if not path:
        return 0
    if not path.isdigit():
        raise ValueError(f"database must be a number in the path (got {path!r})")
    return int(path)


def _redis_server(parts: SplitResult) -> tuple[str | None, int]:
    """``(host, port)`` of a Redis URL, the port defaulting to 6379."""
    return parts.hostname, parts.port or 6379


def _validate_redis_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in _REDIS_SCHEMES:
        raise ValueError(f"scheme must be redis:// or rediss:// (got {parts.scheme or 'none'!r})")
    if not parts.hostname:
        raise ValueError("a host is required")
    _check_port(parts)
    _redis_db(parts)
    return value


class Settings(BaseSettings):
    """Everything the service reads from its environment; immutable once loaded."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore")

    database_url: str
    redis_url: str = "redis://redis:6379/0"
    celery_broker_url: str = "redis://redis:6379/1"
    # Unset: Redis database 2 on the broker's server (same scheme, credentials, host and port).
    celery_result_backend: str | None = None
    # A task unacknowledged this long (its worker died) is delivered again; keep it above the
    # longest task's run time, or a slow task runs twice.
    celery_visibility_timeout_s: float = Field(default=120.0, ge=1, le=86400)
    # Written by the worker once it consumes from the broker; see service.worker.
    celery_ready_file: str = "/tmp/celery-worker.ready"
    log_level: LogLevel = "info"
    environment: Environment = "development"
    health_timeout_s: float = Field(default=1.0, gt=0, le=60)
    # Prometheus metrics: the API's /metrics and the worker's own port. Unset: on, except in
    # production (where /metrics would be public on the API's port).
    metrics: bool | None = None
    metrics_port: int = Field(default=9808, ge=1, le=65535)

    @property
    def metrics_enabled(self) -> bool:
        """Whether to serve metrics: the setting, else everywhere but production."""
        return self.metrics if self.metrics is not None else self.environment != "production"

    @field_validator("database_url")
    @classmethod
    def _normalise_database_url(cls, value: str) -> str:
        """Accept SQLAlchemy and Heroku spellings; asyncpg wants ``postgresql://``."""
        scheme, sep, rest = value.strip().partition("://")
        if not sep or scheme.lower() not in _POSTGRES_SCHEMES:
            raise ValueError("must start with postgresql://, postgres:// or postgresql+asyncpg://")
        normalised = f"postgresql://{rest}"
        parts = urlsplit(normalised)
        if not parts.hostname:
            raise ValueError("a host is required")
        _check_port(parts)
        if not parts.path.strip("/"):
            raise ValueError("a database name is required in the path")
        return normalised

    @field_validator("redis_url", "celery_broker_url")
    @classmethod
    def _check_redis_url(cls, value: str) -> str:
        return _validate_redis_url(value.strip())

    @field_validator("celery_result_backend")
    @classmethod
    def _check_result_backend(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        return _validate_redis_url(value.strip())

    @model_validator(mode="after")
    def _cache_apart_from_celery(self) -> Settings:
        """The cache must not share a Redis database with the broker or the results.

        Flushing the cache would otherwise drop queued tasks or their results.
        """
        cache = urlsplit(self.redis_url)
        for variable, url in (
            ("CELERY_BROKER_URL", self.celery_broker_url),
            ("CELERY_RESULT_BACKEND", self.result_backend_url),
        ):
            other = urlsplit(url)
            if _redis_server(cache) == _redis_server(other) and _redis_db(cache) == _redis_db(
                other
            ):
                raise ValueError(
                    f"{ENV_PREFIX}REDIS_URL and {ENV_PREFIX}{variable} "
                    "must use different Redis databases"
                )
        return self

    @property
    def database_name(self) -> str:
        """The PostgreSQL database the service connects to."""
        return unquote(urlsplit(self.database_url).path.strip("/"))

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL as SQLAlchemy wants it for asyncpg (Alembic uses it)."""
        return "postgresql+asyncpg://" + self.database_url.partition("://")[2]

    @property
    def database_user(self) -> str | None:
        """The PostgreSQL role from the URL, if any."""
        user = urlsplit(self.database_url).username
        return unquote(user) if user else None

    @property
    def secrets(self) -> tuple[str, ...]:
        """Passwords found in the URLs, so messages can be scrubbed of them."""
        urls = (self.database_url, self.redis_url, self.celery_broker_url, self.result_backend_url)
        passwords = [urlsplit(url).password for url in urls]
        return tuple({form for p in passwords if p for form in (p, unquote(p))})

    @property
    def cache_db(self) -> int:
        """Redis database number used as the cache."""
        return _redis_db(urlsplit(self.redis_url))

    @property
    def broker_db(self) -> int:
        """Redis database number used by the Celery broker."""
        return _redis_db(urlsplit(self.celery_broker_url))

    @property
    def result_backend_url(self) -> str:
        """Where Celery keeps task states and results: the setting, else db 2 on the broker."""
        if self.celery_result_backend:
            return self.celery_result_backend
        return urlsplit(self.celery_broker_url)._replace(path=f"/{RESULT_BACKEND_DB}").geturl()

    @property
    def result_db(self) -> int:
        """Redis database number holding Celery's task results."""
        return _redis_db(urlsplit(self.result_backend_url))


def redact_url(url: str) -> str:
    """``scheme://user:secret@host/db`` -> ``scheme://user:***@host/db``, for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo, _, hostinfo = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return parts._replace(netloc=f"{user}:***@{hostinfo}").geturl()


def describe_validation_error(exc: ValidationError) -> str:
    """One line naming each offending variable, e.g. ``AI_AGENTS_DATABASE_URL: field required``."""
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        field = ".".join(str(part) for part in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        if message[:2].istitle():  # "Field required" -> "field required", not "aI_AGENTS_..."
            message = message[:1].lower() + message[1:]
        problems.append(f"{ENV_PREFIX}{field.upper()}: {message}" if field else message)
    return "configuration error: " + "; ".join(problems)


def get_settings() -> Settings:
    """Load settings from the environment, or exit with one line naming the bad variable.

    ``SystemExit(line)`` makes Python print exactly that line to stderr and exit with status 1
    (also in uvicorn's ``--reload`` worker), instead of a pydantic traceback.
    """
    try:
        return Settings()  # type: ignore[call-arg]  # required fields come from the environment
    except ValidationError as exc:
        raise SystemExit(describe_validation_error(exc)) from None
