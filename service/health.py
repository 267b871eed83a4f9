"""Dependency checks: PostgreSQL ``SELECT 1`` and Redis ``PING``, concurrent and time-bounded."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Literal

import asyncpg
from pydantic import BaseModel
from redis.asyncio import Redis

from service.resources import Resources

MAX_ERROR_CHARS = 200


class CheckResult(BaseModel):
    """The outcome of one dependency check."""

    status: Literal["ok", "error"]
    latency_ms: float
    error: str | None = None


class HealthReport(BaseModel):
    """All checks; ``status`` is ``ok`` only when every check is."""

    status: Literal["ok", "error"]
    checks: dict[str, CheckResult]


def _short_message(exc: BaseException, timeout_s: float, secrets: Iterable[str]) -> str:
    """A one-line, bounded, password-free description of a failure."""
    if isinstance(exc, TimeoutError):
        return f"timed out after {timeout_s:g}s"
    text = " ".join(str(exc).split()) or "no details"
    for secret in secrets:
        text = text.replace(secret, "***")
    message = f"{type(exc).__name__}: {text}"
    return message if len(message) <= MAX_ERROR_CHARS else message[: MAX_ERROR_CHARS - 3] + "..."


# A pooled connection the server closed (devstack's `db snapshot`/`restore`/`reset` close the
# stack's own connections; a Postgres restart), or a database that refuses connections for the
# moment it is copied or swapped in: tried again on a fresh connection, for a while.
RECONNECTABLE = (
    OSError,
    asyncpg.PostgresConnectionError,  # class 08, and a connection closed under us
    asyncpg.exceptions.OperatorInterventionError,  # 57P01 terminated, 57P03 cannot connect now
    asyncpg.exceptions.ObjectNotInPrerequisiteStateError,  # "not currently accepting connections"
    asyncpg.exceptions.InvalidCatalogNameError,  # the database is being swapped in
    # an idle connection that received the server's "terminating connection" notice: asyncpg
    # fails the next query with "cannot switch to state 12; another operation is in progress"
    asyncpg.exceptions.InternalClientError,
)
RETRY_PAUSE_S = 0.02


async def ping_postgres(pool: Any, retry_s: float = 0.0) -> None:
    """``SELECT 1`` on a pooled connection; a connection that failed is discarded, not reused.
    A reconnectable failure is tried again on a fresh connection for ``retry_s`` seconds."""
    deadline = time.monotonic() + retry_s
    while True:
        try:
            return await _select_one(pool)
        except RECONNECTABLE:
            if time.monotonic() >= deadline:
                raise
        await asyncio.sleep(RETRY_PAUSE_S)


async def _select_one(pool: Any) -> None:
    conn = await pool.acquire()
    try:
        await conn.fetchval("SELECT 1")
    except BaseException:
        # Broken (server restarted) or interrupted mid-query: never hand it back for reuse.
        # (A connection the server closed may be back in the pool already: nothing to end.)
        with contextlib.suppress(asyncpg.InterfaceError):
            conn.terminate()
        raise
    finally:
        await pool.release(conn)


async def ping_redis(redis: Redis) -> None:
    """``PING`` the cache database."""
    await redis.ping()


async def _timed(
    probe: Callable[[], Awaitable[None]], timeout_s: float, secrets: Iterable[str]
) -> CheckResult:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout_s):
            await probe()
    except Exception as exc:
        elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
        return CheckResult(
            status="error", latency_ms=elapsed_ms, error=_short_message(exc, timeout_s, secrets)
        )
    return CheckResult(status="ok", latency_ms=round((time.perf_counter() - started) * 1000, 1))


async def run_checks(
    resources: Resources, timeout_s: float, secrets: Iterable[str] = ()
) -> HealthReport:
    """Check PostgreSQL and Redis concurrently; each check is bounded by ``timeout_s``."""
    secrets = tuple(secrets)
    postgres, redis = await asyncio.gather(
        _timed(lambda: ping_postgres(resources.pool, timeout_s * 0.8), timeout_s, secrets),
        _timed(lambda: ping_redis(resources.redis), timeout_s, secrets),
    )
    checks = {"postgres": postgres, "redis": redis}
    healthy = all(check.status == "ok" for check in checks.values())
    return HealthReport(status="ok" if healthy else "error", checks=checks)
