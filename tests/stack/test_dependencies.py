"""The seed's checks of Postgres, Redis and the API, against the stack's real services."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import redis

from service.config import Settings


def test_postgres_accepts_the_configured_credentials(sql: Callable[..., list[Any]]) -> None:
    assert sql("SELECT 1 AS one")[0]["one"] == 1


def test_postgres_database_and_role_are_the_configured_ones(
    sql: Callable[..., list[Any]], settings: Settings
) -> None:
    row = sql("SELECT current_database() AS db, current_user AS who")[0]
    assert (row["db"], row["who"]) == (settings.database_name, settings.database_user)


def test_api_pool_serves_concurrent_requests(api: httpx.Client) -> None:
    with ThreadPoolExecutor(max_workers=20) as pool:
        codes = list(pool.map(lambda _: api.get("/health").status_code, range(100)))
    assert codes == [200] * 100


def test_redis_answers(redis_db: Callable[[int], redis.Redis], settings: Settings) -> None:
    assert redis_db(settings.cache_db).ping() is True


def test_redis_appendonly_is_on(redis_db: Callable[[int], redis.Redis], settings: Settings) -> None:
    assert redis_db(settings.cache_db).config_get("appendonly") == {"appendonly": "yes"}


def test_cache_and_broker_databases_are_separate(
    redis_db: Callable[[int], redis.Redis], settings: Settings
) -> None:
    assert settings.cache_db != settings.broker_db
    cache, broker = redis_db(settings.cache_db), redis_db(settings.broker_db)
    key = f"stack-test:{uuid.uuid4()}"
    try:
        cache.set(key, "1", ex=60)
        assert cache.get(key) == b"1"
        assert broker.get(key) is None
    finally:
        cache.delete(key)


def test_health_checks_both_dependencies(api: httpx.Client) -> None:
    response = api.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert {name: check["status"] for name, check in body["checks"].items()} == {
        "postgres": "ok",
        "redis": "ok",
    }


def test_readiness_and_liveness(api: httpx.Client) -> None:
    assert api.get("/api/v1/ready").status_code == 200
    assert api.get("/api/v1/live").json() == {"status": "alive"}


def test_docs(api: httpx.Client) -> None:
    docs = api.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    paths = api.get("/openapi.json").json()["paths"]
    assert {"/health", "/api/v1/tasks", "/api/v1/tasks/{task_id}"} <= set(paths)


def test_index_links(api: httpx.Client) -> None:
    body = api.get("/").json()
    assert body["name"] and body["version"]
    assert body["links"]["docs"] == "/docs"


def test_api_settings_come_from_the_environment(api: httpx.Client, settings: Settings) -> None:
    """The API container and this one get the same AI_AGENTS_* values."""
    assert api.get("/api/v1/info").json() == {
        "environment": settings.environment,
        "log_level": settings.log_level,
        "redis": {"cache_db": settings.cache_db, "broker_db": settings.broker_db},
        "database": {"name": settings.database_name, "user": settings.database_user},
    }
