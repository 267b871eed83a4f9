"""Tests run through the devstack plugin against the stack's real Postgres:
`python -m pytest -p devstack` (in examples/asgi-app)."""

import asyncio

import asyncpg
import pytest


def query(dsn: str, *statements: str) -> object:
    """Run `statements` on `dsn`; the last one's first value."""

    async def run() -> object:
        conn = await asyncpg.connect(dsn)
        try:
            for statement in statements[:-1]:
                await conn.execute(statement)
            return await conn.fetchval(statements[-1])
        finally:
            await conn.close()

    return asyncio.run(run())


def test_the_worker_database_is_its_own(devstack_dsn: str) -> None:
    name = query(devstack_dsn, "SELECT current_database()")
    assert isinstance(name, str) and name.startswith("dst_r")
    count = query(
        devstack_dsn,
        "CREATE TABLE notes (body text)",
        "INSERT INTO notes VALUES ('hello')",
        "SELECT count(*) FROM notes",
    )
    assert count == 1


def test_a_fresh_database_is_empty(devstack_fresh_dsn: str) -> None:
    # no migrations job: the template is an empty database, untouched by the test above
    assert query(devstack_fresh_dsn, "SELECT to_regclass('notes') IS NULL") is True


def test_redis_fixtures_say_there_is_no_redis(request: pytest.FixtureRequest) -> None:
    with pytest.raises(pytest.UsageError, match="declares no Redis"):
        request.getfixturevalue("devstack_redis")
