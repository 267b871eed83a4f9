"""The stack, declared once: every service with everything the other layers need.

To add a service, add one `Service(...)` to `declare_stack` below; the plan, executor, status,
CLI shortcuts, printed links and readiness all follow from it. This is the only module that
names a concrete service."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path
from urllib.parse import quote

from devstack.checks import Completed, ExecCommand, HttpGet, PostgresLogin, RedisPing
from devstack.errors import ConfigError
from devstack.settings import Settings
from devstack.spec import (
    Build,
    ClusterHints,
    Condition,
    Dependency,
    Healthcheck,
    Held,
    Link,
    Mount,
    Port,
    ReusedStage,
    Service,
    Shortcut,
    Stack,
)

DEVSERVER = Path(__file__).with_name("devserver.py")  # mounted into dev-mode servers
GATE = Path(__file__).with_name("gate.py")  # mounted into dev-mode held services (spec.Held)
# What each held service imports while its dependencies start (third-party only for the
# servers: devserver forks fresh servers on change, so project code is never preloaded
# there). Chosen with `python -X importtime` in the API image: the rest of a cold start.
# In order of need (the gate stops preloading once released): the job at head needs only
# asyncpg; with migrations to run, Alembic and SQLAlchemy (about a second, cold).
MIGRATE_PRELOAD = (
    *("asyncpg", "alembic.config", "alembic.command", "alembic.script"),
    *("alembic.runtime.migration", "alembic.runtime.environment", "alembic.context"),
    *("alembic.op", "logging.config", "sqlalchemy", "sqlalchemy.ext.asyncio"),
    *("sqlalchemy.dialects.postgresql.asyncpg", "service.config", "service.models"),
    "service.migrations",
)
API_PRELOAD = (
    *("fastapi", "fastapi.routing", "starlette.applications", "pydantic", "pydantic_settings"),
    *("asyncpg", "redis.asyncio", "redis.retry", "redis.backoff", "redis.exceptions", "h11"),
    *("celery", "kombu.exceptions", "uvicorn", "uvicorn.main", "uvicorn.config"),
    *("uvicorn.protocols.http.h11_impl", "uvicorn.lifespan.on", "uvicorn.loops.asyncio"),
    "watchfiles",
)
WORKER_PRELOAD = (
    *("celery", "celery.signals", "celery.bin.celery", "celery.apps.worker", "celery.worker"),
    *("celery.worker.consumer", "celery.concurrency.prefork", "billiard.pool", "kombu"),
    *("kombu.exceptions", "kombu.transport.redis", "redis", "pydantic", "pydantic_settings"),
    "watchfiles",
)
# A held service's CPU weight until released (Docker's default: 1024): its imports take what
# Postgres' initdb leaves on a small machine instead of slowing it down.
HELD_CPU_SHARES = 128
CODE_ERROR_FILE = "/tmp/devstack-code-error"  # where a dev server writes a code error
IMAGE_REPOSITORY = "devstack/api"  # built images are tagged devstack/api:<hash of inputs>
# the service's own tests, run inside the stack (no cache or bytecode written: read-only tree)
STACK_TESTS = (
    *("python", "-m", "pytest", "-p", "no:cacheprovider"),
    *("--confcutdir", "tests/stack", "tests/stack"),
)
# service.worker.READY_CHECK: passes while the Celery process that wrote the file is alive
WORKER_READY = (
    "sh",
    "-c",
    'read -r pid start < /tmp/celery-worker.ready && stat=$(cat /proc/"$pid"/stat) '
    '&& set -- ${stat##*") "} && [ "${20}" = "$start" ]',
)
# What the Dockerfile's toolchain, builder and test-deps stages copy from the context.
DEPENDENCY_INPUTS = ("certs", "image-build", "pyproject.toml")
MIGRATE_CMD = ("python", "-m", "service.migrate")  # at head: answers in ~0.15 s
UNBUILT = f"{IMAGE_REPOSITORY}:unbuilt"  # replaced by the content-addressed tag before use


def url_part(value: str) -> str:
    """`value` percent-encoded for a URL's user, password or path: every printable value
    round-trips (`p@ss:w/rd%1` -> `p%40ss%3Aw%2Frd%251`)."""
    return quote(value, safe="")


def database_url(settings: Settings, host: str = "postgres", port: int = 5432) -> str:
    """The API's DSN for the stack's Postgres, with user, password and database encoded."""
    return (
        f"postgresql+asyncpg://{url_part(settings.postgres_user)}:"
        f"{url_part(settings.postgres_password)}@{host}:{port}/{url_part(settings.postgres_db)}"
    )


def declare_stack(settings: Settings) -> Stack:
    """The seed's stack: Postgres 17, Redis 7, migrations, the API and its Celery worker."""
    project = settings.project_name
    # Failures while a service starts do not count for as long as `up` would wait for it:
    # a slow first start (initdb on a loaded machine) is not "unhealthy".
    health = Healthcheck(
        (),
        settings.health_interval,
        settings.health_timeout,
        settings.health_retries,
        start_period=settings.timeout,
    )
    host, bind = settings.probe_host, settings.bind_address
    pgdata, redisdata = f"{project}_pgdata", f"{project}_redisdata"
    user, db = url_part(settings.postgres_user), url_part(settings.postgres_db)
    postgres = Service(
        name="postgres",
        title="Postgres",
        image=settings.postgres_image,
        environment=(
            ("POSTGRES_USER", settings.postgres_user),
            ("POSTGRES_PASSWORD", settings.postgres_password),
            ("POSTGRES_DB", settings.postgres_db),
        ),
        ports=(
            Port(
                bind,
                settings.postgres_port,
                5432,
                "DEVSTACK_POSTGRES_PORT",
                url=f"postgresql://{user}:***@{{host}}:{{port}}/{db}",
            ),
        ),
        mounts=(Mount(pgdata, "/var/lib/postgresql/data", "volume"),),
        healthcheck=replace(
            health, test=("CMD-SHELL", "pg_isready -h 127.0.0.1 -U $POSTGRES_USER -d $POSTGRES_DB")
        ),
        readiness=PostgresLogin(
            host,
            settings.postgres_port,
            user=settings.postgres_user,
            password=settings.postgres_password,
            database=settings.postgres_db,
        ),
        stop_signal="SIGINT",
        # the official image's postgres user (70 on Alpine); data below the volume's root
        cluster=ClusterHints(
            uid=70 if "alpine" in settings.postgres_image else 999,
            environment=(("PGDATA", "/var/lib/postgresql/data/pgdata"),),
        ),
        shortcuts=(
            Shortcut(
                "psql",
                "psql in the postgres container, connected as the configured user",
                prefix=("psql", "-U", settings.postgres_user, "-d", settings.postgres_db),
                example="psql -c 'SELECT 1'",
            ),
        ),
        links=(Link(),),
    )
    redis = Service(
        name="redis",
        title="Redis",
        image=settings.redis_image,
        command=("redis-server", "--appendonly", "yes"),
        ports=(
            Port(
                bind, settings.redis_port, 6379, "DEVSTACK_REDIS_PORT", url="redis://{host}:{port}"
            ),
        ),
        mounts=(Mount(redisdata, "/data", "volume"),),
        healthcheck=replace(health, test=("CMD", "redis-cli", "ping")),
        readiness=RedisPing(host, settings.redis_port),
        cluster=ClusterHints(uid=999),  # the official image's redis user
        shortcuts=(
            Shortcut(
                "redis-cli",
                "redis-cli in the redis container",
                prefix=("redis-cli",),
                example="redis-cli -n 1 keys '*'",
            ),
        ),
        links=(Link("{url}/0 (cache)"), Link("{url}/1 (broker)")),
    )
    api_env = {
        "AI_AGENTS_DATABASE_URL": database_url(settings),
        "AI_AGENTS_REDIS_URL": "redis://redis:6379/0",
        "AI_AGENTS_CELERY_BROKER_URL": "redis://redis:6379/1",
        "AI_AGENTS_ENVIRONMENT": "development" if settings.dev_mode else "production",
        **settings.service_env,
    }
    dev = settings.dev_mode
    source = Mount(str(settings.project_dir / "service"), "/app/service", "bind", read_only=True)
    devserver = Mount(str(DEVSERVER), "/opt/devstack/devserver.py", "bind", read_only=True)
    gate = Mount(str(GATE), Held().gate, "bind", read_only=True)
    # Dev mode: the migrations job, the API and the worker start with Postgres and hold after
    # their imports until what they need is there (the gate is mounted; the runtime image of
    # production mode has no mounts, so there every service starts in the declared order).
    api_held = Held(preload=API_PRELOAD, cpu_shares=HELD_CPU_SHARES) if dev else None
    serve = ["service.main:app", "--host", "0.0.0.0", "--port", "8000"]
    if dev:  # reloads in ~0.1 s and answers 503 with the error while the code is broken
        command = ["python", devserver.target, *serve, "--watch", source.target]
        command += ["--error-file", CODE_ERROR_FILE]
        command = list(api_held.wrap(command)) if api_held else command
    else:
        command = ["uvicorn", *serve]
    build = Build(
        context=settings.project_dir,
        target="dev" if dev else "runtime",  # dev: the runtime image + the test dependencies
        args=(("PYTHON_IMAGE", settings.python_image),),
        ca_bundle=settings.ca_bundle,
        repository=IMAGE_REPOSITORY,
        # a dependency change syncs the previous build's environments (Dockerfile)
        reuse=(
            ReusedStage("builder", "DEPS_FROM", DEPENDENCY_INPUTS),
            ReusedStage("test-deps", "TEST_DEPS_FROM", DEPENDENCY_INPUTS),
        ),
    )
    api = Service(
        name="api",
        title="API",
        image=UNBUILT,
        environment=tuple(sorted(api_env.items())),
        command=tuple(command),
        ports=(
            Port(bind, settings.api_port, 8000, "DEVSTACK_API_PORT", url="http://{host}:{port}"),
        ),
        mounts=(source, devserver, gate) if dev else (),
        held=api_held,
        healthcheck=replace(health, test=("CMD", "curl", "-fsS", "http://localhost:8000/health")),
        # Its pool and Redis client are lazy and /health answers 200 only once both answer:
        # it starts with its dependencies, so its interpreter start overlaps theirs.
        depends_on=(
            Dependency("postgres", before_start=False),
            Dependency("redis", before_start=False),
        ),
        readiness=HttpGet(
            host,
            settings.api_port,
            "/api/v1/ready",  # the same checks as /health, at the versioned readiness path
            container_port=8000,
        ),
        code_error_file=CODE_ERROR_FILE if dev else "",
        liveness=HttpGet(host, settings.api_port, "/api/v1/live", container_port=8000),
        cluster=ClusterHints(uid=10001),  # the Dockerfile's USER
        build=build,
        shortcuts=(
            Shortcut("shell", "a shell in the API container", default=("sh",), example="shell"),
        ),
        links=(Link(), Link("docs {url}/docs")),
    )
    alembic = Mount(str(settings.project_dir / "alembic"), "/app/alembic", "bind", read_only=True)
    migrate_cmd = MIGRATE_CMD
    migrate_held = Held(preload=MIGRATE_PRELOAD, cpu_shares=HELD_CPU_SHARES) if dev else None
    migrate = Service(
        name="migrate",
        title="Migrations",
        image=UNBUILT,
        build=build,
        # the migration files' digest: new or edited ones make `up` run the job again
        environment=(
            *api.environment,
            ("DEVSTACK_MIGRATIONS", migrations_digest(settings.project_dir)[:16]),
        ),
        command=migrate_held.wrap(migrate_cmd) if migrate_held else migrate_cmd,
        mounts=(source, alembic, gate) if dev else (),
        held=migrate_held,
        depends_on=(Dependency("postgres"),),
        readiness=Completed(),
        one_shot=True,
        plan_command=(*migrate_cmd, "check"),  # "migrations: at head" / the revisions to run
        shortcuts=(
            Shortcut(
                "migrate",
                "run Alembic in the stack (default: upgrade head); ./alembic is writable",
                prefix=migrate_cmd,
                example="migrate revision --autogenerate -m 'add x'",
                one_off=True,
                mounts=(replace(alembic, read_only=False),),
                as_invoking_user=True,  # new revision files belong to you, not root
                up_first=("migrate",),
            ),
        ),
        cluster=ClusterHints(uid=10001),
    )
    after_migrations = Dependency("migrate", Condition.COMPLETED)
    api = replace(
        api,
        depends_on=(*api.depends_on, after_migrations),
        shortcuts=(
            *api.shortcuts,
            *(
                (
                    Shortcut(
                        "test",
                        "run the service's tests inside the stack against the real services",
                        prefix=STACK_TESTS,
                        example="test -k worker",
                        one_off=True,
                        mounts=(
                            Mount(str(settings.project_dir / "tests"), "/app/tests", "bind", True),
                            alembic,
                        ),
                        environment=(
                            ("DEVSTACK_IN_STACK", "1"),
                            ("DEVSTACK_API_URL", "http://api:8000"),
                        ),
                        up_first=("api", "worker"),
                    ),
                )
                if dev  # the dev image has pytest; the runtime image does not
                else ()
            ),
        ),
    )
    celery = "celery -A service.worker worker --loglevel INFO --concurrency 2"
    celery += " --without-mingle --without-gossip"  # mingle alone costs a second per start
    restarted = ("--command", celery, "--watch", source.target, "--ready-pattern", r"\bready\.")
    worker_held = Held(preload=WORKER_PRELOAD, cpu_shares=HELD_CPU_SHARES) if dev else None
    worker_errors = ("--error-file", CODE_ERROR_FILE)
    worker = Service(
        name="worker",
        title="Worker",
        image=UNBUILT,
        build=build,  # the API's image: one build serves both
        environment=api.environment,
        command=(
            worker_held.wrap(("python", devserver.target, *restarted, *worker_errors))
            if worker_held
            else tuple(celery.split())
        ),
        mounts=(source, devserver, gate) if dev else (),
        held=worker_held,
        healthcheck=replace(health, test=("CMD", *WORKER_READY)),
        depends_on=(Dependency("postgres"), Dependency("redis"), after_migrations),
        # the worker_ready signal's file, written by the live Celery process: it consumes
        readiness=ExecCommand(WORKER_READY, error_file=CODE_ERROR_FILE if dev else ""),
        code_error_file=CODE_ERROR_FILE if dev else "",
        cluster=ClusterHints(uid=10001),  # the Dockerfile's USER
    )
    stack = Stack(
        project=project,
        network=f"{project}_net",
        volumes=(pgdata, redisdata),
        services=(postgres, redis, migrate, api, worker),
    )
    check_ports(stack, settings)
    return stack


def migrations_digest(project_dir: Path) -> str:
    """A digest of what decides the schema: `alembic/alembic.ini`, `env.py` and every revision
    file (names and contents; docs do not count). The migrations job reruns when it changes,
    and the pytest plugin keys its template database by it."""
    root = project_dir / "alembic"
    digest = hashlib.sha256()
    files = [root / "alembic.ini", root / "env.py", *sorted((root / "versions").glob("*.py"))]
    for path in files:
        if path.is_file():
            digest.update(path.relative_to(root).as_posix().encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def migrations_job(stack: Stack, settings: Settings, database: str) -> Service:
    """The migrations job aimed at `database` instead of the application's (the pytest
    plugin migrates its template databases with it)."""
    service = stack.service("migrate")
    url = database_url(replace(settings, postgres_db=database))
    environment = {**dict(service.environment), "AI_AGENTS_DATABASE_URL": url}
    # run once, to completion: not held (nothing would release it)
    return replace(
        service, environment=tuple(sorted(environment.items())), command=MIGRATE_CMD, held=None
    )


def check_ports(stack: Stack, settings: Settings) -> None:
    """Two published ports on the same host port are a settings error (exit 2)."""
    seen: dict[int, str] = {}
    for port, service in stack.published_ports():
        key = port.setting or f"{service.name}'s port {port.container_port}"
        if port.host_port in seen:
            raise ConfigError(
                f"{settings.env_file} (settings): {key} and {seen[port.host_port]} both use host "
                f"port {port.host_port}",
                hint=f"edit {settings.env_file}; see .env.example",
            )
        seen[port.host_port] = key


def declared_shortcuts() -> list[Shortcut]:
    """The exec shortcuts the stack declares, known without reading `.env` (command words)."""
    defaults = Settings(project_dir=Path.cwd(), env_file=Path(".env"))
    return [
        shortcut for service in declare_stack(defaults).services for shortcut in service.shortcuts
    ]
