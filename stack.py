"""This project's stack, read by devstack (`python -m devstack up`): PostgreSQL 17, Redis 7,
the Alembic migrations job, the FastAPI service and its Celery worker, all from this repo's
Dockerfile. Every `env.*` call names the `.env` key that sets the value and its default
(`.env.example` documents each). See README.md, "Declaring your stack"."""

from pathlib import Path

from devstack import recipes as r

HERE = Path(__file__).resolve().parent

# The project's own modules each held service imports while its dependencies start.
MIGRATE_PRELOAD = ("service.config", "service.models", "service.migrations")
# the worker's libraries beyond Celery's: imported while it is held, and already there for the
# worker devserver starts on the first save (the later ones get what the last one imported)
WORKER_PRELOAD = ("asyncpg", "prometheus_client")
MIGRATE = ("python", "-m", "service.migrate")  # `upgrade head` by default; ~0.15 s at head
DEPENDENCY_INPUTS = ("certs", "image-build", "pyproject.toml")  # what the deps stages copy
WORKER_METRICS_PORT = 9808  # service.config.Settings.metrics_port
MONITORING = "monitoring"


def stack(env: r.Env) -> r.Stack:
    postgres = r.postgres(
        env,
        "postgres",
        image=env.image("DEVSTACK_POSTGRES_IMAGE", "postgres:17-alpine"),
        port_default=5433,
        user=env.text("POSTGRES_USER", "devstack"),
        password=env.secret("POSTGRES_PASSWORD", r.EXAMPLE_PASSWORD),
        database=env.text("POSTGRES_DB", "devstack"),
    )
    redis = r.redis(
        env,
        "redis",
        image=env.image("DEVSTACK_REDIS_IMAGE", "redis:7-alpine"),
        links=("{url}/0 (cache)", "{url}/1 (broker)"),
    )
    image = r.dockerfile(
        env,
        "devstack/api",
        args={"PYTHON_IMAGE": env.image("DEVSTACK_PYTHON_IMAGE", "python:3.12-slim")},
        reuse=(  # a dependency change syncs the previous build's environments (Dockerfile)
            r.ReusedStage("builder", "DEPS_FROM", DEPENDENCY_INPUTS),
            r.ReusedStage("test-deps", "TEST_DEPS_FROM", DEPENDENCY_INPUTS),
        ),
    )
    app_env = {
        "AI_AGENTS_DATABASE_URL": r.database_url(postgres),
        "AI_AGENTS_REDIS_URL": r.redis_url(redis, 0),
        "AI_AGENTS_CELERY_BROKER_URL": r.redis_url(redis, 1),  # results: db 2
        "AI_AGENTS_ENVIRONMENT": "development" if env.dev else "production",
        **env.passthrough("AI_AGENTS_"),
    }
    # Prometheus metrics (service.config): on in development; in production (the Kubernetes
    # export) only with AI_AGENTS_METRICS=true, as /metrics would be public on the API's port
    metrics = env.dev or app_env.get("AI_AGENTS_METRICS", "").lower() in ("true", "1", "yes", "on")
    migrate = r.alembic_job(
        env,
        "migrate",
        image,
        database=postgres,
        database_env="AI_AGENTS_DATABASE_URL",
        cli=MIGRATE,
        command=MIGRATE,
        check_command=(*MIGRATE, "check"),  # "migrations: at head" / the revisions to run
        sources="service",
        environment=app_env,
        preload=MIGRATE_PRELOAD,
        uid=10001,
    )
    api = r.asgi_app(
        env,
        "api",
        image,
        title="API",
        app="service.main:app",
        port=r.publish(env, "DEVSTACK_API_PORT", 8000, 8000, url="http://{host}:{port}"),
        sources="service",
        environment=app_env,
        # its pool and Redis client are lazy: it starts with them, ready only after them
        depends_on=(
            r.ready(postgres, before_start=False),
            r.ready(redis, before_start=False),
            r.completed_of(migrate),
        ),
        ready_path="/api/v1/ready",
        metrics_path="/metrics" if metrics else "",
        live_path="/api/v1/live",
        health_path="/health",
        uses_redis_dbs=(0, 1, 2),
        uid=10001,  # the Dockerfile's USER
        links=("{url}", "docs {url}/docs"),
        shortcuts=(
            r.Shortcut("shell", "a shell in the API container", default=("sh",), example="shell"),
            r.tests_in_stack(
                env,
                paths=("tests/stack",),
                mounts={"/app/tests": "tests", "/app/alembic": "alembic"},
                environment={"DEVSTACK_IN_STACK": "1", "DEVSTACK_API_URL": "http://api:8000"},
                up_first=("api", "worker"),
            ),
        ),
    )
    worker = r.celery_worker(
        env,
        "worker",
        image,
        title="Worker",
        app="service.worker",
        sources="service",
        ready_file="/tmp/celery-worker.ready",  # service.worker.READY_FILE
        preload=WORKER_PRELOAD,
        environment=app_env,
        depends_on=(postgres, redis, r.completed_of(migrate)),
        uses_redis_dbs=(0, 1, 2),
        uid=10001,
        metrics_port=WORKER_METRICS_PORT if metrics else 0,
    )
    reports = r.celery_worker(  # the `reports` queue's own worker (service.celery_app)
        env,
        "worker-reports",
        image,
        title="Reports worker",
        app="service.worker",
        queues=("reports",),
        concurrency=1,
        sources="service",
        ready_file="/tmp/celery-worker.ready",
        preload=WORKER_PRELOAD,
        environment=app_env,
        depends_on=(postgres, redis, r.completed_of(migrate)),
        uses_redis_dbs=(0, 1, 2),
        uid=10001,
        metrics_port=WORKER_METRICS_PORT if metrics else 0,
    )
    # --- monitoring: off unless `up --with monitoring` (or DEVSTACK_WITH=monitoring) ---------
    prometheus = r.prometheus(  # scrapes every service above that declares metrics
        env, "prometheus", image=env.image("DEVSTACK_PROMETHEUS_IMAGE", "prom/prometheus:v2.55.1")
    )
    postgres_exporter = r.postgres_exporter(
        env,
        "postgres-exporter",
        postgres,
        image=env.image(
            "DEVSTACK_POSTGRES_EXPORTER_IMAGE",
            "quay.io/prometheuscommunity/postgres-exporter:v0.16.0",
        ),
    )
    redis_exporter = r.redis_exporter(
        env,
        "redis-exporter",
        redis,
        image=env.image("DEVSTACK_REDIS_EXPORTER_IMAGE", "oliver006/redis_exporter:v1.67.0-alpine"),
    )
    grafana = r.grafana(
        env,
        "grafana",
        prometheus,
        image=env.image("DEVSTACK_GRAFANA_IMAGE", "grafana/grafana:11.3.0"),
        dashboards={"devstack.json": (HERE / "monitoring/dashboard.json").read_text()},
        admin_password=env.secret("GRAFANA_ADMIN_PASSWORD", r.EXAMPLE_PASSWORD),
    )
    monitoring = (prometheus, postgres_exporter, redis_exporter, grafana)
    return r.stack(env, postgres, redis, migrate, api, worker, reports, *monitoring)
