"""``/`` (service index) and ``/api/v1/info`` (non-secret configuration)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from service import __version__
from service.deps import SettingsDep

SERVICE_NAME = "devstack-api"

router = APIRouter(tags=["meta"])


class Links(BaseModel):
    """Where to go next."""

    docs: str = "/docs"
    health: str = "/health"
    ready: str = "/api/v1/ready"
    live: str = "/api/v1/live"
    info: str = "/api/v1/info"


class Index(BaseModel):
    """What this service is."""

    name: str = SERVICE_NAME
    version: str = __version__
    links: Links = Links()


class RedisInfo(BaseModel):
    """Redis database numbers in use."""

    cache_db: int
    broker_db: int


class DatabaseInfo(BaseModel):
    """PostgreSQL database and role (never the password)."""

    name: str
    user: str | None


class Info(BaseModel):
    """Configuration safe to show: no passwords, no full URLs."""

    environment: str
    log_level: str
    redis: RedisInfo
    database: DatabaseInfo


@router.get("/", response_model=Index, summary="Service name, version and links")
async def index() -> Index:
    """Name, version and links to the docs and the health endpoints."""
    return Index()


@router.get("/api/v1/info", response_model=Info, summary="Non-secret configuration")
async def info(settings: SettingsDep) -> Info:
    """Environment, log level, Redis db numbers, database name and user."""
    return Info(
        environment=settings.environment,
        log_level=settings.log_level,
        redis=RedisInfo(cache_db=settings.cache_db, broker_db=settings.broker_db),
        database=DatabaseInfo(name=settings.database_name, user=settings.database_user),
    )
