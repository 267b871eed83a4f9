"""Tests that run INSIDE the stack (``python -m devstack test``), from the API's dev image.

They reach Postgres, Redis, the API and the worker by their service names, with the same
``AI_AGENTS_*`` environment as the API. The host's ``python -m pytest`` does not collect this
directory (tests/conftest.py) and refuses it without ``DEVSTACK_IN_STACK=1``. In the stack,
from /app, with ./tests mounted read-only::

    python -m pytest -p no:cacheprovider --confcutdir tests/stack tests/stack

(``--confcutdir``: tests/conftest.py is the host's and needs docker-py; ``-p no:cacheprovider``
and ``PYTHONDONTWRITEBYTECODE=1``, set by the image: nothing is written to the tree.)
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
import redis

from service.config import Settings, get_settings

API_URL = os.environ.get("DEVSTACK_API_URL", "http://api:8000")

T = TypeVar("T")


def poll(check: Callable[[], T | None], timeout: float = 30.0, interval: float = 0.1) -> T:
    """Call ``check`` until it returns a truthy value or stops raising; fail at the deadline."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
            last = result
        except Exception as exc:
            last = exc
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s; last: {last!r}")


def pytest_configure(config: pytest.Config) -> None:
    """Refuse to run outside the stack, where ``postgres``, ``redis`` and ``api`` mean nothing."""
    del config
    if os.environ.get("DEVSTACK_IN_STACK") != "1":
        raise pytest.UsageError(
            "tests/stack runs inside the stack: `python -m devstack test` "
            "(or set DEVSTACK_IN_STACK=1 where the stack's services resolve)"
        )


@pytest.fixture(scope="session")
def settings() -> Settings:
    """The service's settings, from this container's environment (the API's)."""
    return get_settings()


@pytest.fixture(scope="session")
def api() -> Iterator[httpx.Client]:
    """An HTTP client for the running API container."""
    with httpx.Client(base_url=API_URL, timeout=10) as client:
        yield client


@pytest.fixture
def sql(settings: Settings) -> Callable[..., list[Any]]:
    """Run one query on a fresh connection; return its rows."""

    def run(query: str, *args: object) -> list[Any]:
        async def go() -> list[Any]:
            conn = await asyncpg.connect(settings.database_url, timeout=5)
            try:
                return list(await conn.fetch(query, *args))
            finally:
                await conn.close()

        return asyncio.run(go())

    return run


@pytest.fixture
def redis_db(settings: Settings) -> Iterator[Callable[[int], redis.Redis]]:
    """Clients for numbered databases of the stack's Redis, closed after the test."""
    clients: list[redis.Redis] = []

    def open_db(db: int) -> redis.Redis:
        url = urlsplit(settings.redis_url)._replace(path=f"/{db}").geturl()
        client = redis.Redis.from_url(url, socket_timeout=5)
        clients.append(client)
        return client

    yield open_db
    for client in clients:
        client.close()
