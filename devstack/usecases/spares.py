"""Clones of the migrated template made ahead ("spares"): a test run takes one per worker by
renaming it (milliseconds), where cloning costs a quarter of a second of Postgres' file syncs,
and makes the next run's while its tests run. A spare belongs to one template (its name
carries the template's digest): spares of older migrations are dropped when new ones are
made. Nothing else tells a spare from a database of the stack's own."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

from devstack.declare.settings import Settings
from devstack.usecases import databases
from devstack.usecases.threads import each_at_once

SPARE_PREFIX = "dst_spare_"


def _prefix(template: str) -> str:
    return f"{SPARE_PREFIX}{template.removeprefix(databases.TEMPLATE_PREFIX)}_"


def _like(prefix: str) -> str:
    return prefix.replace("_", "\\_") + "%"


def claim(settings: Settings, template: str, names: Sequence[str]) -> list[str]:
    """Rename a spare of `template` to each of `names` while there are spares; the names
    that got one (another run may take a spare first: then the next is tried)."""
    import asyncpg

    async def work(conn: Any) -> list[str]:
        query = "SELECT datname FROM pg_database WHERE datname LIKE $1"
        spares = [str(r["datname"]) for r in await conn.fetch(query, _like(_prefix(template)))]
        claimed: list[str] = []
        for name in names:
            while spares:
                try:
                    await databases.rename(conn, spares.pop(), name)
                except asyncpg.PostgresError:  # taken (or being made) by another run
                    continue
                claimed.append(name)
                break
        return claimed

    return databases.run_admin(settings, work)


def make(settings: Settings, template: str, count: int) -> int:
    """Make spares of `template` until there are `count` (at once, each under a name that
    exists only once the copy is whole); drop the spares of other templates. How many made."""

    async def survey(conn: Any) -> int:
        rows = await conn.fetch(
            "SELECT datname FROM pg_database d WHERE datname LIKE $1 AND NOT EXISTS "
            "(SELECT 1 FROM pg_stat_activity a WHERE a.datname = d.datname)",
            _like(SPARE_PREFIX),
        )
        names = [str(r["datname"]) for r in rows]
        for name in names:
            if not name.startswith(_prefix(template)):
                await databases.drop_database(conn, name)
        return sum(name.startswith(_prefix(template)) for name in names)

    missing = count - databases.run_admin(settings, survey)
    names = [_prefix(template) + secrets.token_hex(4) for _ in range(max(missing, 0))]
    each_at_once(lambda name: databases.clone(settings, name, template), names)
    return len(names)


def drop_all(settings: Settings) -> None:
    """Drop every spare (with the templates they copy)."""

    async def work(conn: Any) -> None:
        query = "SELECT datname FROM pg_database WHERE datname LIKE $1"
        for row in await conn.fetch(query, _like(SPARE_PREFIX)):
            await databases.drop_database(conn, str(row["datname"]))

    databases.run_admin(settings, work)
