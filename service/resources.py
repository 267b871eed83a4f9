"""The long-lived clients: one asyncpg pool and one Redis client, opened and closed together."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
from redis.asyncio import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from service.config import Settings, redact_url

logger = logging.getLogger(__name__)

POOL_MAX_SIZE = 5
COMMAND_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Resources:
    """Connections shared by all requests; both are lazy and survive outages of their servers."""

    pool: Any  # asyncpg.Pool (asyncpg ships no type information)
    redis: Redis


@asynccontextmanager
async def open_resources(settings: Settings) -> AsyncIterator[Resources]:
    """Open the pool and the client without needing either server up; close both on exit."""
    timeout = settings.health_timeout_s
    # min_size=0: no connection is made until first use, so start-up never waits for Postgres.
    pool = await asyncpg.create_pool(
        settings.database_url,
        min_size=0,
        max_size=POOL_MAX_SIZE,
        timeout=timeout,  # connect timeout
        command_timeout=COMMAND_TIMEOUT_S,
    )
    redis = Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        # One immediate retry replaces a connection the server dropped (e.g. after a restart).
        retry=Retry(NoBackoff(), 1),
    )
    logger.info(
        "clients ready: postgres %s, redis cache %s",
        redact_url(settings.database_url),
        redact_url(settings.redis_url),
    )
    try:
        yield Resources(pool=pool, redis=redis)
    finally:
        await redis.aclose()
        try:
            await asyncio.wait_for(pool.close(), timeout=5.0)
        except TimeoutError:
            pool.terminate()
        logger.info("clients closed")
