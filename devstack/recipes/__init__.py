"""Recipes: one function per kind of service, each returning one `Service` block.

A project's `stack.py` declares its stack with them (see README.md, "Declaring your stack"):

    from devstack import recipes as r

    def stack(env: r.Env) -> r.Stack:
        db = r.postgres(env, image=env.image("DEVSTACK_POSTGRES_IMAGE", "postgres:17-alpine"))
        mail = r.container(env, "mail", "axllent/mailpit",
                           ports=[r.publish(env, "DEVSTACK_MAIL_PORT", 8025, 8025)],
                           ready=r.http(...))
        return r.stack(env, db, mail)
"""

from devstack.declare.settings import Env
from devstack.declare.spec import Build, InitTemplate, ReusedStage, Service, Shortcut, Stack
from devstack.recipes.base import (
    bind,
    completed,
    completed_of,
    container,
    exec_check,
    healthcheck,
    http,
    log_line,
    publish,
    ready,
    stack,
    tcp,
    volume,
    with_shortcuts,
)
from devstack.recipes.data import EXAMPLE_PASSWORD, database_url, postgres, redis, redis_url
from devstack.recipes.monitoring import grafana, postgres_exporter, prometheus, redis_exporter
from devstack.recipes.python import (
    alembic_job,
    asgi_app,
    celery_worker,
    dockerfile,
    tests_in_stack,
)

__all__ = [
    "EXAMPLE_PASSWORD",
    "Build",
    "Env",
    "InitTemplate",
    "ReusedStage",
    "Service",
    "Shortcut",
    "Stack",
    "alembic_job",
    "asgi_app",
    "bind",
    "celery_worker",
    "completed",
    "completed_of",
    "container",
    "database_url",
    "dockerfile",
    "exec_check",
    "grafana",
    "healthcheck",
    "http",
    "log_line",
    "postgres",
    "postgres_exporter",
    "prometheus",
    "publish",
    "ready",
    "redis",
    "redis_exporter",
    "redis_url",
    "stack",
    "tcp",
    "tests_in_stack",
    "volume",
    "with_shortcuts",
]
