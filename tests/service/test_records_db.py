"""The service's task records against the stack's real Postgres, through the devstack pytest
plugin (a clone of the migrated template per test): `python -m pytest -p devstack tests/service`.
"""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from service.records import record_task


def test_a_task_is_recorded_finished(devstack_fresh_dsn: str) -> None:
    task = str(uuid.uuid4())
    record = asyncio.run(record_task(devstack_fresh_dsn, task, "hello", "w1"))
    assert record["id"] == task and record["attempts"] == 1 and record["finished_at"]


def test_a_redelivered_task_counts_its_attempts(devstack_fresh_dsn: str) -> None:
    task = str(uuid.uuid4())
    asyncio.run(record_task(devstack_fresh_dsn, task, "hello", "w1"))
    again = asyncio.run(record_task(devstack_fresh_dsn, task, "hello", "w2"))
    assert again["attempts"] == 2 and again["worker"] == "w2"


def test_each_test_starts_from_the_migrated_template(devstack_fresh_dsn: str) -> None:
    async def count() -> int:
        conn = await asyncpg.connect(devstack_fresh_dsn)
        try:
            return int(await conn.fetchval("SELECT count(*) FROM task_records"))
        finally:
            await conn.close()

    assert asyncio.run(count()) == 0


def test_the_worker_database_and_redis_are_this_workers(
    devstack_pg_connect: object, devstack_redis: object, devstack_redis_prefix: str
) -> None:
    import redis

    async def name() -> str:
        async with devstack_pg_connect() as conn:  # type: ignore[operator]
            return str(await conn.fetchval("SELECT current_database()"))

    assert asyncio.run(name()).startswith("dst_r")
    assert isinstance(devstack_redis, redis.Redis)
    devstack_redis.set(f"{devstack_redis_prefix}k", "v")
    assert devstack_redis.get(f"{devstack_redis_prefix}k") == b"v"


pytestmark = pytest.mark.integration
