"""The app factory; ``service.main:app`` is built on first access, so imports have no effects."""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypedDict

from fastapi import FastAPI, Response

from service import __version__
from service.config import Settings, get_settings, redact_url
from service.metrics import METRICS_PATH, ClientsCollector, HttpMetrics, MetricsMiddleware
from service.resources import Resources, open_resources
from service.routes import health, meta, tasks
from service.task_client import TaskClient

logger = logging.getLogger("service")


class LifespanState(TypedDict):
    """Per-app state the lifespan hands to every request (``request.state``)."""

    resources: Resources


def configure_logging(level: str) -> None:
    """Send the ``service`` loggers to stderr at ``level`` (uvicorn configures its own)."""
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(level.upper())


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; without ``settings``, read ``AI_AGENTS_*`` (or exit with one line)."""
    resolved = settings if settings is not None else get_settings()
    configure_logging(resolved.log_level)
    task_client = TaskClient(resolved)
    clients = ClientsCollector()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[LifespanState]:
        logger.info(
            "starting: environment=%s database=%s",
            resolved.environment,
            redact_url(resolved.database_url),
        )
        try:
            async with open_resources(resolved) as resources:
                clients.clients = resources
                yield {"resources": resources}
        finally:
            clients.clients = None
            task_client.close()

    app = FastAPI(
        title="devstack API",
        version=__version__,
        description=(
            "Reports on its PostgreSQL 17 and Redis 7 dependencies; queues tasks for its worker."
        ),
        lifespan=lifespan,
    )
    app.state.settings = resolved
    app.state.task_client = task_client
    app.include_router(meta.router)
    app.include_router(health.router)
    app.include_router(tasks.router)
    if resolved.metrics_enabled:
        add_metrics(app, clients)
    return app


def add_metrics(app: FastAPI, clients: ClientsCollector) -> None:
    """``/metrics``: the requests (by route template, method, status) and the clients."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    registry.register(clients)
    app.add_middleware(MetricsMiddleware, metrics=HttpMetrics(registry))

    @app.get(METRICS_PATH, include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def __getattr__(name: str) -> FastAPI:
    """``from service.main import app`` (what uvicorn does) builds the app from the environment."""
    if name == "app":
        application = create_app()
        globals()["app"] = application
        return application
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
