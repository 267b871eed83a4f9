"""Databases in the stack's Postgres: migrated templates, per-test-run clones, snapshots.

Everything here works through template databases (`CREATE DATABASE x TEMPLATE y`): a copy of
the files, no dump and no restore. Postgres refuses to copy a database while anyone is connected
to it, so templates and snapshots are made connection-free (`ALLOW_CONNECTIONS false`).

Naming convention (the only databases devstack ever drops on its own):

- `dst_tpl_<hash>`           a migrated template; <hash> covers the migration files
- `dst_b<pid>_<hash>`        a template being built by process <pid> (renamed when complete)
- `dst_r<pid>_<tag>_<rest>`  a pytest run's clone; <pid> is the run's controlling process
- `dss_<name>`               a developer's snapshot (`db snapshot NAME`)

A database whose <pid> is no longer alive on this machine belongs to a dead run."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from devstack.declare.capabilities import Migrations, url_part
from devstack.declare.settings import Settings
from devstack.declare.spec import Service, Stack
from devstack.errors import ConfigError, DevstackError

T = TypeVar("T")
TEMPLATE_PREFIX = "dst_tpl_"
SNAPSHOT_PREFIX = "dss_"
RUN_DB = re.compile(r"dst_[rb](\d+)_")
SNAPSHOT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,58}")
CONNECT_TIMEOUT_S = 10.0
KEEP_TEMPLATES = 3  # migrated templates kept (the current one and the newest others)
RESTART_WAIT_S = 60.0  # a clone waits this long for a Postgres that restarts mid-run
MAINTENANCE_DB = "postgres"  # admin work connects here, never to a database it copies


class DatabaseError(DevstackError):
    """A database operation in the stack's Postgres failed (missing, busy, or refused)."""


class MigrationFailed(DatabaseError):
    """Migrations failed while building a template or resetting a database."""


@dataclass(frozen=True)
class Server:
    """Where the host reaches the stack's Postgres, and as whom."""

    host: str
    port: int
    user: str
    password: str
    database: str  # the application's database

    @classmethod
    def of(cls, settings: Settings) -> Server:
        """The stack's application database (what its Postgres recipe offers), as published
        on the host."""
        _, database = _declared(settings).app_database()
        return cls(
            settings.probe_host, database.port, database.user, database.password, database.name
        )

    def dsn(self, database: str | None = None) -> str:
        """A libpq/asyncpg DSN for `database` (default: the application's)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return (
            f"postgresql://{url_part(self.user)}:{url_part(self.password)}@{host}:{self.port}/"
            f"{url_part(database or self.database)}"
        )


def quote_ident(name: str) -> str:
    """`name` as a quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def run_on(server: Server, work: Callable[[Any], Awaitable[T]], wait: float = 0.0) -> T:
    """Run `work(connection)` on a fresh admin connection to the maintenance database;
    connection failures are retried for `wait` seconds (Postgres restarting)."""

    async def main() -> T:
        conn = await connect_waiting(server, wait)
        try:
            return await work(conn)
        finally:
            await conn.close()

    return asyncio.run(main())


async def exists(conn: Any, name: str) -> bool:
    """Whether database `name` exists."""
    return bool(await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name))


async def _clients(conn: Any, name: str) -> int:
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
    )


async def terminate_clients(conn: Any, name: str) -> int:
    """End every other session on database `name`; how many there were."""
    rows = await conn.fetch(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = $1 AND pid <> pg_backend_pid()",
        name,
    )
    return len(rows)


async def drop_database(conn: Any, name: str, force: bool = True) -> None:
    """Drop `name` if it exists (with `force`: its clients terminated)."""
    await conn.execute(
        f"DROP DATABASE IF EXISTS {quote_ident(name)}{' WITH (FORCE)' if force else ''}"
    )


async def clone_database(conn: Any, name: str, template: str, file_copy: bool = False) -> None:
    """Create database `name` as a copy of `template` (no one may be connected to it). With
    `file_copy` (Postgres 15+; older ones only copy files): copied as files between two
    checkpoints instead of written through the WAL (Postgres' default since 15), the cheaper
    way for a small template copied and dropped many times (see clone_pool)."""
    strategy = " STRATEGY FILE_COPY" if file_copy and _major(conn) >= 15 else ""
    await conn.execute(
        f"CREATE DATABASE {quote_ident(name)} TEMPLATE {quote_ident(template)}{strategy}"
    )


def _major(conn: Any) -> int:
    return int(conn.get_server_version().major)


async def seal(conn: Any, name: str, comment: str) -> None:
    """Make `name` a connection-free template carrying `comment`."""
    ident = quote_ident(name)
    await conn.execute(f"ALTER DATABASE {ident} WITH ALLOW_CONNECTIONS false IS_TEMPLATE true")
    await conn.execute(f"COMMENT ON DATABASE {ident} IS {_literal(comment)}")


async def unseal_and_drop(conn: Any, name: str) -> None:
    """Drop `name`, a template or not (an invalid one, left by an interrupted drop or
    create, cannot be altered: it is dropped as it is)."""
    row = await conn.fetchrow(
        "SELECT datistemplate, datconnlimit = -2 AS invalid FROM pg_database WHERE datname = $1",
        name,
    )
    if row is None:
        return
    if row["datistemplate"] and not row["invalid"]:
        await conn.execute(f"ALTER DATABASE {quote_ident(name)} WITH IS_TEMPLATE false")
    await drop_database(conn, name)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


_last_declared: list[tuple[Settings, Stack]] = []  # the last settings' stack (one per process)


def _declared(settings: Settings) -> Stack:
    """The stack these settings declare (declared once per settings object); ConfigError
    when it has no application database."""
    from devstack.usecases import project_of

    if _last_declared and _last_declared[0][0] is settings:
        return _last_declared[0][1]
    stack = project_of(settings).stack
    try:
        stack.app_database()
    except LookupError as exc:
        raise ConfigError(
            str(exc), hint="the `db` commands and the pytest plugin need one"
        ) from None
    _last_declared[:] = [(settings, stack)]
    return stack


# --- migrations and templates --------------------------------------------------------------
EMPTY_TEMPLATE = TEMPLATE_PREFIX + "empty"  # a stack without a migrations job: an empty database


def template_name(settings: Settings) -> str:
    """The template database for the current migrations (keyed by their files' digest); for
    a stack that declares no migrations job, an empty database."""
    try:
        _, migrations = _declared(settings).migrations_job()
    except LookupError:
        return EMPTY_TEMPLATE
    return TEMPLATE_PREFIX + migrations.digest(settings.project_dir)[:12]


def _migrations(stack: Stack) -> tuple[Service, Migrations]:
    try:
        return stack.migrations_job()
    except LookupError as exc:
        raise ConfigError(
            str(exc), hint="the `db` commands and the pytest plugin need one"
        ) from None


def migrations_job(stack: Stack, database: str) -> Service:
    """The stack's migrations job aimed at `database` instead of the application's, run once
    to completion (not held: nothing would release it)."""
    from dataclasses import replace

    service, migrations = _migrations(stack)
    url = migrations.url.format(database=url_part(database))
    environment = {**dict(service.environment), migrations.database_env: url}
    return replace(
        service,
        environment=tuple(sorted(environment.items())),
        command=migrations.command,
        held=None,
    )


def migrate(settings: Settings, database: str) -> None:
    """Migrate `database` to head, in a one-off container of the stack's migrations job
    (its image, the stack's network); MigrationFailed with its output on failure. A stack
    with no migrations job has nothing to migrate: `database` stays empty."""
    from devstack.usecases import connect, project_of, resolve_images, run_quietly

    declared = project_of(settings).stack
    if not any(service.migrations for service in declared.services):
        return
    stack = resolve_images(declared)
    service = migrations_job(stack, database)
    code, output = run_quietly(connect(), stack, service, service.command)
    if code != 0:
        raise MigrationFailed(
            f"migrations failed on {database}: {last_line(output, code)}",
            hint="fix the migration, then run the tests again (no template was kept)",
            details=output,
        )


def last_line(output: str, code: int) -> str:
    """A failed command's last non-blank line of output (its one-line reason), else its code."""
    lines = [line for line in output.strip().splitlines() if line.strip()]
    return lines[-1] if lines else f"exit code {code}"


def ensure_template(settings: Settings, lock_dir: Path | None = None) -> str:
    """The migrated template for the current migration files: reused when it exists, else
    built under a temporary name, migrated, sealed and renamed (so a failed build never
    leaves a template behind). One builder at a time per template, across processes."""
    from devstack.usecases.lock import file_lock

    name = template_name(settings)
    server = Server.of(settings)
    lock_dir = lock_dir or Path(os.environ.get("TMPDIR", "/tmp"))
    with file_lock(lock_dir / f"devstack-{settings.project_name}-{name}.lock"):
        if not run_on(server, lambda conn: _exists_forgetting_others(conn, name)):
            build_template(server, name, lambda building: migrate(settings, building))
            forget_old_templates(server, name)
    return name


async def _exists_forgetting_others(conn: Any, template: str) -> bool:
    """Whether `template` exists; when it does, the old templates are dropped on the same
    connection (a connection costs ~10 ms of a test run's start)."""
    if not await exists(conn, template):
        return False
    await _forget_old(conn, template)
    return True


def build_template(server: Server, name: str, fill: Callable[[str], None]) -> None:
    """Make the template `name` on `server`: `fill(database)` fills a new database under a
    temporary name, which is then sealed and renamed (a failed fill leaves nothing)."""
    building = f"dst_b{os.getpid()}_{name.removeprefix(TEMPLATE_PREFIX)}"

    async def create(conn: Any) -> None:
        await unseal_and_drop(conn, building)
        await conn.execute(f"CREATE DATABASE {quote_ident(building)}")

    run_on(server, create)
    try:
        fill(building)
    except BaseException:
        run_on(server, lambda c: unseal_and_drop(c, building))
        raise
    comment = json.dumps({"devstack": "template", "at": utc_now()})

    async def finish(conn: Any) -> None:
        await terminate_clients(conn, building)
        await rename(conn, building, name)
        await seal(conn, name, comment)

    run_on(server, finish)


def forget_old_templates(server: Server, current: str) -> None:
    """Drop old templates (best effort: a concurrent run may be dropping them too)."""
    with contextlib.suppress(DatabaseError):
        run_on(server, lambda conn: _forget_old(conn, current))


async def _forget_old(conn: Any, current: str) -> None:
    """`forget_old_templates` on an open connection; its failures only cost the cleanup."""
    import asyncpg

    with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
        await _drop_old_templates(conn, current, KEEP_TEMPLATES)


def drop_templates(settings: Settings) -> list[str]:
    """Drop every migrated template of the stack (the next test run builds its own)."""
    server = Server.of(settings)

    async def work(conn: Any) -> list[str]:
        rows = await conn.fetch(
            "SELECT datname FROM pg_database WHERE datname LIKE 'dst\\_tpl\\_%'"
        )
        names = [str(row["datname"]) for row in rows]
        for name in names:
            await unseal_and_drop(conn, name)
        return names

    return run_on(server, work)


def stale_templates(made: dict[str, str], current: str, keep: int, busy: set[str]) -> list[str]:
    """The templates (name -> when made, ISO 8601) to drop: all but the `keep` newest, never
    the current one (it counts as kept) nor one with a client (`busy`)."""
    others = sorted((n for n in made if n != current), key=lambda n: (made[n], n), reverse=True)
    return sorted(n for n in others[max(keep - 1, 0) :] if n not in busy)


async def _drop_old_templates(conn: Any, current: str, keep: int) -> list[str]:
    """Drop the migrated templates of older migration files beyond the `keep` newest (see
    stale_templates). A copy being made from one holds off the drop until it is done."""
    rows = await conn.fetch(
        "SELECT datname, shobj_description(oid, 'pg_database') AS comment, "
        "(SELECT count(*) FROM pg_stat_activity a WHERE a.datname = d.datname) AS clients "
        "FROM pg_database d WHERE datname LIKE 'dst\\_tpl\\_%'"
    )
    made = {}
    for row in rows:
        try:
            made[row["datname"]] = str(json.loads(row["comment"] or "{}").get("at", ""))
        except ValueError:
            made[row["datname"]] = ""
    busy = {row["datname"] for row in rows if row["clients"]}
    stale = stale_templates(made, current, keep, busy)
    for name in stale:
        await unseal_and_drop(conn, name)
    return stale


def clone(settings: Settings, name: str, template: str) -> str:
    """Create `name` from `template` (dropping a leftover of the same name); its DSN."""
    server = Server.of(settings)

    async def work(conn: Any) -> None:
        await drop_database(conn, name)
        await clone_database(conn, name, template)

    run_on(server, work, wait=RESTART_WAIT_S)
    return server.dsn(name)


async def connect_waiting(server: Server, wait: float) -> Any:
    """An admin connection, retried for `wait` seconds."""
    import asyncpg
    from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_fixed

    retrying = AsyncRetrying(
        retry=retry_if_exception_type((OSError, asyncpg.PostgresError, TimeoutError)),
        wait=wait_fixed(0.2),
        stop=stop_after_delay(wait),
        reraise=True,
    )
    try:
        return await retrying(
            asyncpg.connect, server.dsn(MAINTENANCE_DB), timeout=CONNECT_TIMEOUT_S
        )
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise DatabaseError(
            f"cannot connect to Postgres at {server.host}:{server.port}: {exc}",
            hint="start the stack: `python -m devstack up`",
        ) from exc


def drop(settings: Settings, names: Iterable[str]) -> None:
    """Drop the databases `names` (terminating their clients)."""
    names = list(names)

    async def work(conn: Any) -> None:
        for name in names:
            await drop_database(conn, name)

    run_on(Server.of(settings), work, wait=RESTART_WAIT_S)


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def drop_dead_runs(server: Server) -> list[str]:
    """Drop the clones and half-built templates of test runs whose process is gone, on
    `server` (the stack's Postgres, or the scratch server); only names that follow the
    convention are considered. Returns what was dropped."""

    async def work(conn: Any) -> list[str]:
        rows = await conn.fetch("SELECT datname FROM pg_database WHERE datname LIKE 'dst\\_%'")
        dead = []
        for row in rows:
            match = RUN_DB.match(row["datname"])
            if match and not pid_alive(int(match.group(1))):
                dead.append(row["datname"])
        import asyncpg

        dropped = []
        for name in dead:
            try:
                await unseal_and_drop(conn, name)
                dropped.append(name)
            except asyncpg.PostgresError:  # a concurrent run is dropping it right now
                continue
        return dropped

    return run_on(server, work)


def utc_now() -> str:
    """Now, UTC, ISO 8601 to the second."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_admin(settings: Settings, work: Callable[[Any], Awaitable[T]]) -> T:
    """`work(connection)` on an admin connection to the stack's Postgres."""
    return run_on(Server.of(settings), work)


async def rename(conn: Any, name: str, to: str) -> None:
    """Rename database `name` to `to` (no one may be connected to it)."""
    await conn.execute(f"ALTER DATABASE {quote_ident(name)} RENAME TO {quote_ident(to)}")
