"""Recipes for a Python service built from the project's Dockerfile: an ASGI web app, a
Celery worker, an Alembic migrations job, and the project's tests run inside the stack.

Dev mode and production differ here, not in the stack file. Dev mode (DEVSTACK_DEV_MODE): the
Dockerfile's dev target; the sources bind-mounted read-only; the web app and the worker run
under devserver (a save is served in ~0.1 s; a code error is answered at once with file and
line); the job, the app and the worker start early and hold after their imports until their
dependencies are met (`Held`). Production: the runtime target, plain uvicorn and celery, the
declared start order and nothing mounted."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from devstack.declare.capabilities import Migrations, url_part
from devstack.declare.checks import Completed, ExecCommand, HttpGet
from devstack.declare.settings import Env
from devstack.declare.spec import (
    Build,
    ClusterHints,
    Condition,
    Dependency,
    Held,
    Link,
    Metrics,
    Mount,
    Port,
    ReusedStage,
    Service,
    Shortcut,
)
from devstack.recipes.base import _dependencies, bind, healthcheck, strings

# The in-container programs (devserver, the gate), mounted read-only as one folder.
PROGRAMS = Path(__file__).resolve().parents[1] / "programs"
PROGRAMS_TARGET = "/opt/devstack"
DEVSERVER_TARGET = f"{PROGRAMS_TARGET}/devserver.py"
# A held service's CPU weight until released (Docker's default: 1024): its imports take what
# the databases' first start leaves on a small machine instead of slowing it down.
HELD_CPU_SHARES = 128
CODE_ERROR_FILE = "/tmp/devstack-code-error"  # where a dev server writes a code error
MULTIPROC_DIR = "/tmp/prometheus-multiproc"  # a prefork worker's processes' metric files
# What each kind of held service imports while its dependencies start (third-party only for
# servers: devserver forks fresh servers on change, so project code is never preloaded
# there); chosen with `python -X importtime`. The project adds its own modules.
ASGI_PRELOAD = (
    *("fastapi", "fastapi.routing", "starlette.applications", "pydantic", "pydantic_settings"),
    *("asyncpg", "redis.asyncio", "redis.retry", "redis.backoff", "redis.exceptions", "h11"),
    *("celery", "kombu.exceptions", "uvicorn", "uvicorn.main", "uvicorn.config"),
    *("uvicorn.protocols.http.h11_impl", "uvicorn.lifespan.on", "uvicorn.loops.asyncio"),
    "watchfiles",
)
OLD_WORKER_FINISH_S = 60  # dev mode: what a replaced worker may take to finish its tasks
CELERY_PRELOAD = (
    *("celery", "celery.signals", "celery.bin.celery", "celery.apps.worker", "celery.worker"),
    *("celery.worker.consumer", "celery.concurrency.prefork", "billiard.pool", "kombu"),
    *("kombu.exceptions", "kombu.transport.redis", "redis", "pydantic", "pydantic_settings"),
    "watchfiles",
)
# In order of need (the gate stops preloading once released): a job at head needs only
# asyncpg; with migrations to run, Alembic and SQLAlchemy (about a second, cold).
ALEMBIC_PRELOAD = (
    *("asyncpg", "alembic.config", "alembic.command", "alembic.script"),
    *("alembic.runtime.migration", "alembic.runtime.environment", "alembic.context"),
    *("alembic.op", "logging.config", "sqlalchemy", "sqlalchemy.ext.asyncio"),
    "sqlalchemy.dialects.postgresql.asyncpg",
)


def dockerfile(
    env: Env,
    repository: str,
    *,
    dockerfile: str = "Dockerfile",
    dev_target: str = "dev",
    target: str = "runtime",
    args: Mapping[str, str] | None = None,
    reuse: Sequence[ReusedStage] = (),
) -> Build:
    """The project's image, built from `dockerfile` (the `dev_target` in dev mode) and tagged
    `<repository>:<hash of its inputs>`; rebuilt only when its inputs change. `reuse`: stages
    a dependency change syncs from the previous build instead of starting over."""
    return Build(
        context=env.project_dir,
        dockerfile=dockerfile,
        target=dev_target if env.dev else target,
        args=tuple(sorted((args or {}).items())),
        ca_bundle=env.settings.ca_bundle,
        repository=repository,
        reuse=tuple(reuse),
    )


def _held(env: Env, preload: Sequence[str]) -> Held | None:
    return Held(preload=tuple(preload), cpu_shares=HELD_CPU_SHARES) if env.dev else None


def _programs() -> Mount:
    return Mount(str(PROGRAMS), PROGRAMS_TARGET, "bind", read_only=True)


def asgi_app(
    env: Env,
    name: str,
    image: Build,
    *,
    app: str,
    port: Port,
    sources: str,
    source_target: str = "",
    environment: Mapping[str, str] | None = None,
    depends_on: Iterable[Service | str | Dependency] = (),
    ready_path: str = "/",
    live_path: str = "",
    health_path: str = "",
    preload: Sequence[str] = (),
    uses_redis_dbs: Sequence[int] = (),
    uid: int | None = None,
    title: str = "",
    links: Sequence[str] = ("{url}",),
    shortcuts: Sequence[Shortcut] = (),
    group: str = "",
    metrics_path: str = "",
    disposable: bool = True,
) -> Service:
    """An ASGI app (`module:attribute`) served on `port`. Ready when `GET ready_path` answers
    200; `live_path` is its liveness endpoint (a cluster restarts it when that fails),
    `health_path` Docker's health check (curl in the image); `metrics_path` its Prometheus
    metrics on the same port (the "http" family: `http_requests_total` and
    `http_request_duration_seconds` by method, route and status). In dev mode it runs under
    devserver with `sources` (a folder of the project) mounted read-only and held until its
    `before_start` dependencies are met; otherwise plain uvicorn. `disposable` (default): its
    state lives in its dependencies, so `down` kills it at once (a request in flight is cut)."""
    preload, links = strings(preload, "preload", name), strings(links, "links", name)
    target = source_target or f"/app/{sources}"
    serve = [app, "--host", "0.0.0.0", "--port", str(port.container_port)]
    held = _held(env, (*ASGI_PRELOAD, *preload))
    source = bind(env, sources, target)
    if held:  # reloads in ~0.1 s and answers 503 with the error while the code is broken
        command = held.wrap(
            ["python", DEVSERVER_TARGET, *serve, "--watch", target, "--error-file", CODE_ERROR_FILE]
        )
    else:
        command = ("uvicorn", *serve)
    host, inner = port.probe_host, port.container_port
    health = ("CMD", "curl", "-fsS", f"http://localhost:{inner}{health_path}")
    return Service(
        name=name,
        title=title or name,
        image=f"{image.repository}:unbuilt",  # the build's tag replaces it before use
        build=image,
        environment=tuple(sorted((environment or {}).items())),
        command=tuple(command),
        ports=(port,),
        mounts=(source, _programs()) if held else (),
        held=held,
        healthcheck=healthcheck(env, health) if health_path else None,
        depends_on=_dependencies(depends_on),
        readiness=HttpGet(host, port.host_port, ready_path, container_port=inner),
        liveness=HttpGet(host, port.host_port, live_path, container_port=inner)
        if live_path
        else None,
        code_error_file=CODE_ERROR_FILE if held else "",
        cluster=ClusterHints(uid=uid),
        links=tuple(Link(t) for t in links),
        shortcuts=tuple(shortcuts),
        key_value_dbs=tuple(uses_redis_dbs),
        group=group,
        metrics=Metrics(inner, metrics_path, "http") if metrics_path else None,
        disposable=disposable,
    )


def celery_worker(
    env: Env,
    name: str,
    image: Build,
    *,
    app: str,
    sources: str,
    source_target: str = "",
    queues: Sequence[str] = (),
    concurrency: int = 2,
    ready_file: str = "",
    environment: Mapping[str, str] | None = None,
    depends_on: Iterable[Service | str | Dependency] = (),
    preload: Sequence[str] = (),
    uses_redis_dbs: Sequence[int] = (),
    uid: int | None = None,
    title: str = "",
    group: str = "",
    metrics_port: int = 0,
    disposable: bool = True,
) -> Service:
    """A Celery worker for `app` consuming `queues` (default: Celery's default queue). Ready
    when `ready_file` (written by the live worker process on Celery's `worker_ready` signal as
    `<pid> <start time>`) names a running process. `metrics_port`: where the worker serves
    Prometheus metrics (the "tasks" family: `celery_tasks_total` by task and state,
    `celery_task_duration_seconds`, `celery_queue_length`); its processes share them through
    `PROMETHEUS_MULTIPROC_DIR` (prometheus-client's multiprocess mode, which the prefork pool
    needs), set here. In dev mode it runs under devserver's
    command mode: Celery restarts on a change under `sources`, a task module that fails to
    import is reported like the web app's code errors. `disposable` (default): `down` kills
    it at once instead of waiting for Celery's warm shutdown. Right for an app that acks late
    (Celery's `task_acks_late`): the running task stays unacked in the
    broker and is delivered again after the broker's visibility timeout; pass False for an app
    that acks early (a killed worker would lose its running task)."""
    queues, preload = strings(queues, "queues", name), strings(preload, "preload", name)
    target = source_target or f"/app/{sources}"
    celery = f"celery -A {app} worker --loglevel INFO --concurrency {concurrency}"
    celery += f" -Q {','.join(queues)}" if queues else ""
    celery += " --without-mingle --without-gossip"  # mingle alone costs a second per start
    held = _held(env, (*CELERY_PRELOAD, *preload))
    source = bind(env, sources, target)
    if held:
        # --overlap: the new worker consumes at once; the old one finishes its tasks beside
        # it (warm shutdown: each is acked once, on the code it started with)
        # --preload: what the gate had no time to import while held (it stops at the
        # release) is imported before the first worker, so no restart imports it again
        restarted = (
            *("--command", celery, "--watch", target, "--ready-pattern", r"\bready\."),
            *("--overlap", "--graceful-timeout", str(OLD_WORKER_FINISH_S)),
            *("--preload", ",".join(held.preload)),
        )
        command = held.wrap(
            ("python", DEVSERVER_TARGET, *restarted, "--error-file", CODE_ERROR_FILE)
        )
    else:
        command = tuple(celery.split())
    check = (
        (
            "sh",
            "-c",
            f'read -r pid start < {ready_file} && stat=$(cat /proc/"$pid"/stat) '
            '&& set -- ${stat##*") "} && [ "${20}" = "$start" ]',
        )
        if ready_file
        else ("sh", "-c", f'celery -A {app} inspect ping -d "celery@$HOSTNAME"')
    )
    variables = dict(environment or {})
    if metrics_port:
        variables.setdefault("PROMETHEUS_MULTIPROC_DIR", MULTIPROC_DIR)
    return Service(
        name=name,
        title=title or name,
        image=f"{image.repository}:unbuilt",  # the build's tag replaces it before use
        build=image,
        environment=tuple(sorted(variables.items())),
        command=tuple(command),
        mounts=(source, _programs()) if held else (),
        held=held,
        healthcheck=healthcheck(env, ("CMD", *check)),
        depends_on=_dependencies(depends_on),
        readiness=ExecCommand(check, error_file=CODE_ERROR_FILE if held else ""),
        code_error_file=CODE_ERROR_FILE if held else "",
        cluster=ClusterHints(uid=uid),
        key_value_dbs=tuple(uses_redis_dbs),
        group=group,
        metrics=Metrics(metrics_port, "/metrics", "tasks") if metrics_port else None,
        disposable=disposable,
    )


def alembic_job(
    env: Env,
    name: str,
    image: Build,
    *,
    database: Service,
    database_env: str,
    scheme: str = "postgresql+asyncpg",
    cli: Sequence[str] = ("alembic",),
    command: Sequence[str] = ("alembic", "upgrade", "head"),
    check_command: Sequence[str] = ("alembic", "check"),
    directory: str = "alembic",
    directory_target: str = "",
    sources: str = "",
    source_target: str = "",
    environment: Mapping[str, str] | None = None,
    preload: Sequence[str] = (),
    uid: int | None = None,
    title: str = "Migrations",
) -> Service:
    """A migrations job: `command` migrates `database`'s application database (its URL in
    `database_env`) to head, once per change of the migration files (their digest is in its
    configuration), before what depends on it (`completed_of(job)`). `--plan` shows the
    first line of `check_command`. Adds the `migrate` shortcut (`cli` + your arguments, in a
    one-off container with the migrations folder writable, as you) and lets the pytest
    plugin migrate its template databases."""
    cli, command = strings(cli, "cli", name), strings(command, "command", name)
    check_command, preload = (
        strings(check_command, "check_command", name),
        strings(preload, "preload", name),
    )
    assert database.database is not None, f"{database.name} is not a database service"
    db = database.database
    url = db.url(database.name, scheme=scheme, database="{database}").replace(
        url_part("{database}"), "{database}"
    )
    migrations = Migrations(directory, database_env, url, tuple(command))
    env_vars = {
        **(environment or {}),
        database_env: url.format(database=url_part(db.name)),
        # the migration files' digest: new or edited ones make `up` run the job again
        "DEVSTACK_MIGRATIONS": migrations.digest(env.project_dir)[:16],
    }
    held = _held(env, (*ALEMBIC_PRELOAD, *preload))
    mounted = bind(env, directory, directory_target or f"/app/{directory}")
    mounts: tuple[Mount, ...] = (mounted, _programs())
    if sources:
        mounts = (bind(env, sources, source_target or f"/app/{sources}"), *mounts)
    return Service(
        name=name,
        title=title,
        image=f"{image.repository}:unbuilt",  # the build's tag replaces it before use
        build=image,
        environment=tuple(sorted(env_vars.items())),
        command=held.wrap(command) if held else tuple(command),
        mounts=mounts if held else (),
        held=held,
        depends_on=(Dependency(database.name),),
        readiness=Completed(),
        one_shot=True,
        plan_command=tuple(check_command),
        shortcuts=(
            Shortcut(
                "migrate",
                f"run Alembic in the stack (default: upgrade head); ./{directory} is writable",
                prefix=tuple(cli),
                example="migrate revision --autogenerate -m 'add x'",
                one_off=True,
                mounts=(Mount(mounted.source, mounted.target, "bind", read_only=False),),
                as_invoking_user=True,  # new revision files belong to you, not root
                up_first=(name,),
            ),
        ),
        cluster=ClusterHints(uid=uid),
        migrations=migrations,
    )


def tests_in_stack(
    env: Env,
    name: str = "test",
    *,
    paths: Sequence[str] = ("tests",),
    mounts: Mapping[str, str] | None = None,
    environment: Mapping[str, str] | None = None,
    up_first: Sequence[str] = (),
) -> Shortcut:
    """A shortcut that runs pytest on `paths` in a one-off container of the service's image
    on the stack's network, after `up` of `up_first`; `mounts`: project folders (read-only)
    by container path. Dev mode only: the runtime image has no pytest."""
    paths, up_first = strings(paths, "paths", name), strings(up_first, "up_first", name)
    why = (
        ""
        if env.dev
        else (
            f"`{name}` runs in dev mode only: the production image has no pytest "
            "(set DEVSTACK_DEV_MODE=true)"
        )
    )
    argv: tuple[str, ...] = ("python", "-m", "pytest", "-p", "no:cacheprovider")
    argv += ("--confcutdir", paths[0], *paths) if paths else ()
    return Shortcut(
        name,
        "run the project's tests inside the stack against the real services",
        prefix=argv,
        example=f"{name} -k worker",
        one_off=True,
        mounts=tuple(bind(env, path, target) for target, path in (mounts or {}).items()),
        environment=tuple(sorted((environment or {}).items())),
        up_first=tuple(up_first),
        unavailable=why,
    )


def completed_job(service: Service) -> Dependency:
    """Depend on the one-shot `service` (e.g. the migrations job) having completed."""
    return Dependency(service.name, Condition.COMPLETED)
