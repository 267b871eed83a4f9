"""The plugin's Redis fixtures: each worker claims a numbered Redis database no service of the
stack uses (a key in database 0 says whose: `SET NX`), or falls back to a key prefix in
database 0 when all are taken; claims of dead runs are released when Redis is first asked for."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from devstack.pytest_plugin import StackSession

REDIS_CLAIM = "devstack:pytest:redis-db:{}"  # in db 0: which run/worker holds database N
REDIS_FALLBACK_DB = 0


@dataclass(frozen=True)
class RedisSlot:
    """A worker's Redis database number and the key prefix it must use ("" in its own db)."""

    url: str
    db: int
    prefix: str
    claim: str


def _redis(settings: Any) -> tuple[str, list[int]]:
    """The stack's Redis as the host reaches it, and the numbered databases no service of
    the stack declares it uses (the ones handed out to test workers). Without a Redis in the
    stack: UsageError."""
    from devstack.usecases import project_of

    stack = project_of(settings).stack
    try:
        _, store = stack.key_value_store()
    except LookupError as exc:
        raise pytest.UsageError(f"devstack: {exc} (the devstack_redis fixtures need one)") from None
    host = settings.probe_host
    used = stack.key_value_dbs_used() | {REDIS_FALLBACK_DB}
    free = [n for n in range(store.databases) if n not in used]
    return f"redis://{f'[{host}]' if ':' in host else host}:{store.port}", free


def _release_dead_claims(base: str, free: list[int]) -> None:
    """Release the claims of runs whose process is gone."""
    import redis

    from devstack.usecases.databases import pid_alive

    client = redis.Redis.from_url(f"{base}/{REDIS_FALLBACK_DB}")
    try:
        for n in free:
            owner = client.get(REDIS_CLAIM.format(n))
            if owner is not None:
                pid = str(owner, "utf-8") if isinstance(owner, bytes) else str(owner)
                pid = pid.partition("_")[0]
                if pid.isdigit() and not pid_alive(int(pid)):
                    client.delete(REDIS_CLAIM.format(n))
    finally:
        client.close()


@pytest.fixture(scope="session")
def devstack_redis_slot(
    devstack_stack: StackSession, request: pytest.FixtureRequest
) -> Iterator[RedisSlot]:
    """Claim a free Redis database number for this worker (a key in db 0 says whose), or fall
    back to a key prefix in db 0 when all are taken; released (and emptied) at the end."""
    import redis

    from devstack.pytest_plugin import _worker

    base, free = _redis(devstack_stack.settings)
    _release_dead_claims(base, free)
    owner = f"{devstack_stack.run_id}_{_worker(request)}"
    admin = redis.Redis.from_url(f"{base}/{REDIS_FALLBACK_DB}")
    slot = RedisSlot(f"{base}/{REDIS_FALLBACK_DB}", REDIS_FALLBACK_DB, f"dst:{owner}:", "")
    for n in free:
        try:
            claimed = admin.set(REDIS_CLAIM.format(n), owner, nx=True)
        except redis.ResponseError:  # fewer databases configured
            break
        if claimed:
            slot = RedisSlot(f"{base}/{n}", n, "", REDIS_CLAIM.format(n))
            break
    try:
        yield slot
    finally:
        _empty(slot)
        if slot.claim and admin.get(slot.claim) == owner.encode():
            admin.delete(slot.claim)
        admin.close()


def _empty(slot: RedisSlot) -> None:
    import redis

    client = redis.Redis.from_url(slot.url)
    try:
        if slot.prefix:
            keys = list(client.scan_iter(match=f"{slot.prefix}*"))
            if keys:
                client.delete(*keys)
        else:
            client.flushdb()
    finally:
        client.close()


@pytest.fixture
def devstack_redis_prefix(devstack_redis_slot: RedisSlot) -> str:
    """The key prefix this worker must use: "" when it has its own Redis database."""
    return devstack_redis_slot.prefix


@pytest.fixture
def devstack_redis(devstack_redis_slot: RedisSlot) -> Iterator[Any]:
    """A redis.Redis on the worker's database, emptied of this worker's keys before each test."""
    import redis

    _empty(devstack_redis_slot)
    client = redis.Redis.from_url(devstack_redis_slot.url)
    yield client
    client.close()
