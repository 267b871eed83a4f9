"""The stack as pure data: what should exist, derived from Settings with no Docker calls."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from devstack.settings import Settings

POSTGRES, REDIS, API = "postgres", "redis", "api"
SERVICE_DIR = "service"  # bind-mounted over the image's copy in dev mode
API_IMAGE_REPO = "devstack/api"


@dataclass(frozen=True)
class Healthcheck:
    """Docker's own healthcheck (what `docker ps` shows); durations in seconds."""

    test: tuple[str, ...]
    interval: float
    timeout: float
    retries: int


@dataclass(frozen=True)
class Port:
    host_ip: str
    host_port: int
    container_port: int
    setting: str = field(default="", compare=False)  # the .env key that chooses host_port


@dataclass(frozen=True)
class Mount:
    source: str  # a volume name or an absolute host path
    target: str
    kind: str  # "volume" | "bind"
    read_only: bool = False


@dataclass(frozen=True)
class Probe:
    """How devstack itself checks readiness from the host, through the real protocol."""

    kind: str  # "postgres" | "redis" | "http"
    host: str
    port: int
    user: str = ""
    password: str = ""
    database: str = ""
    path: str = ""


@dataclass(frozen=True)
class Build:
    """How to build a service's image: the build inputs that the build hash covers."""

    context: Path
    dockerfile: str = "Dockerfile"
    target: str = "runtime"
    args: tuple[tuple[str, str], ...] = ()
    ca_bundle: Path | None = None


@dataclass(frozen=True)
class Service:
    name: str
    image: str
    environment: tuple[tuple[str, str], ...] = ()
    command: tuple[str, ...] = ()
    ports: tuple[Port, ...] = ()
    mounts: tuple[Mount, ...] = ()
    healthcheck: Healthcheck | None = None
    depends_on: tuple[str, ...] = ()
    probe: Probe | None = None
    build: Build | None = None
    stop_signal: str | None = None
    # A fragment of the command line of a server process that runs under a supervisor which
    # outlives it (uvicorn --reload spawns its server): readiness fails fast when none is alive.
    server_process: str = ""

    def config_fields(self) -> dict[str, str]:
        """A fingerprint per configuration item (values hashed: no secrets in labels)."""
        items: dict[str, object] = {
            "image": self.image,
            "command": self.command,
            "ports": [(p.host_ip, p.host_port, p.container_port) for p in self.ports],
            "mounts": [asdict(m) for m in self.mounts],
            "healthcheck": asdict(self.healthcheck) if self.healthcheck else None,
            "stop_signal": self.stop_signal,
        }
        items.update({f"env {k}": v for k, v in self.environment})
        return {k: _digest(v) for k, v in items.items()}

    def config_hash(self) -> str:
        return _digest(self.config_fields())


def _digest(value: object) -> str:
    blob = json.dumps(value, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


@dataclass(frozen=True)
class Stack:
    project: str
    network: str
    volumes: tuple[str, ...]
    services: tuple[Service, ...]

    def service(self, name: str) -> Service:
        for service in self.services:
            if service.name == name:
                return service
        raise KeyError(name)

    def with_image(self, name: str, image: str) -> Stack:
        """A copy whose service `name` runs `image` (the built API image's tag)."""
        services = tuple(replace(s, image=image) if s.name == name else s for s in self.services)
        return replace(self, services=services)

    def container_name(self, service: str) -> str:
        return f"{self.project}-{service}"

    def levels(self) -> list[list[str]]:
        """Services grouped by dependency depth: each level only needs earlier ones."""
        remaining = {s.name: set(s.depends_on) for s in self.services}
        levels: list[list[str]] = []
        done: set[str] = set()
        while remaining:
            ready = sorted(n for n, deps in remaining.items() if deps <= done)
            if not ready:
                raise ValueError(f"dependency cycle among {sorted(remaining)}")
            levels.append(ready)
            done.update(ready)
            for name in ready:
                del remaining[name]
        return levels

    def with_dependencies(self, names: list[str]) -> list[str]:
        """`names` plus everything they depend on, in start order."""
        wanted: set[str] = set()
        stack = list(names)
        while stack:
            name = stack.pop()
            if name not in wanted:
                wanted.add(name)
                stack.extend(self.service(name).depends_on)
        return [n for level in self.levels() for n in level if n in wanted]

    def dependents(self, names: list[str]) -> list[str]:
        """`names` plus everything that depends on them, in stop order (dependents first)."""
        wanted = set(names)
        changed = True
        while changed:
            changed = False
            for service in self.services:
                if service.name not in wanted and wanted & set(service.depends_on):
                    wanted.add(service.name)
                    changed = True
        return [n for level in reversed(self.levels()) for n in level if n in wanted]


def database_url(settings: Settings) -> str:
    return (
        f"postgresql+asyncpg://{settings.postgres_user}:{settings.postgres_password}"
        f"@{POSTGRES}:5432/{settings.postgres_db}"
    )


def build_stack(settings: Settings) -> Stack:
    """The seed's stack: Postgres 17, Redis 7 and the API, as pure data."""
    project = settings.project_name
    health = Healthcheck(
        (), settings.health_interval, settings.health_timeout, settings.health_retries
    )
    host, bind = settings.probe_host, settings.bind_address
    pgdata, redisdata = f"{project}_pgdata", f"{project}_redisdata"
    postgres = Service(
        name=POSTGRES,
        image=settings.postgres_image,
        environment=(
            ("POSTGRES_USER", settings.postgres_user),
            ("POSTGRES_PASSWORD", settings.postgres_password),
            ("POSTGRES_DB", settings.postgres_db),
        ),
        ports=(Port(bind, settings.postgres_port, 5432, "DEVSTACK_POSTGRES_PORT"),),
        mounts=(Mount(pgdata, "/var/lib/postgresql/data", "volume"),),
        healthcheck=replace(
            health, test=("CMD-SHELL", "pg_isready -h 127.0.0.1 -U $POSTGRES_USER -d $POSTGRES_DB")
        ),
        probe=Probe(
            "postgres",
            host,
            settings.postgres_port,
            user=settings.postgres_user,
            password=settings.postgres_password,
            database=settings.postgres_db,
        ),
        stop_signal="SIGINT",
    )
    redis = Service(
        name=REDIS,
        image=settings.redis_image,
        command=("redis-server", "--appendonly", "yes"),
        ports=(Port(bind, settings.redis_port, 6379, "DEVSTACK_REDIS_PORT"),),
        mounts=(Mount(redisdata, "/data", "volume"),),
        healthcheck=replace(health, test=("CMD", "redis-cli", "ping")),
        probe=Probe("redis", host, settings.redis_port),
    )
    api_env = {
        "AI_AGENTS_DATABASE_URL": database_url(settings),
        "AI_AGENTS_REDIS_URL": f"redis://{REDIS}:6379/0",
        "AI_AGENTS_CELERY_BROKER_URL": f"redis://{REDIS}:6379/1",
        "AI_AGENTS_ENVIRONMENT": "development" if settings.dev_mode else "production",
        **settings.service_env,
    }
    command = ["uvicorn", "service.main:app", "--host", "0.0.0.0", "--port", "8000"]
    mounts: tuple[Mount, ...] = ()
    if settings.dev_mode:
        command += ["--reload", "--reload-dir", "/app/service"]
        source = str(settings.project_dir / SERVICE_DIR)
        mounts = (Mount(source, "/app/service", "bind", read_only=True),)
    build = Build(
        context=settings.project_dir,
        args=(("PYTHON_IMAGE", settings.python_image),),
        ca_bundle=settings.ca_bundle,
    )
    api = Service(
        name=API,
        image=f"{API_IMAGE_REPO}:unbuilt",  # replaced by the content-addressed tag (build.py)
        environment=tuple(sorted(api_env.items())),
        command=tuple(command),
        ports=(Port(bind, settings.api_port, 8000, "DEVSTACK_API_PORT"),),
        mounts=mounts,
        healthcheck=replace(health, test=("CMD", "curl", "-fsS", "http://localhost:8000/health")),
        depends_on=(POSTGRES, REDIS),
        probe=Probe("http", host, settings.api_port, path="/health"),
        build=build,
        server_process="multiprocessing.spawn" if settings.dev_mode else "",
    )
    return Stack(
        project=project,
        network=f"{project}_net",
        volumes=(pgdata, redisdata),
        services=(postgres, redis, api),
    )
