"""Snapshots of the application's database (`db snapshot/restore/list/drop/reset`): copies
made through template databases, with the stack's own connections closed for the copy and
other clients refused unless `--force` (see devstack.usecases.dbclients)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devstack.declare.settings import Settings
from devstack.errors import ConfigError
from devstack.usecases.databases import (
    SNAPSHOT_NAME,
    SNAPSHOT_PREFIX,
    DatabaseError,
    Server,
    clone_database,
    drop_database,
    exists,
    migrate,
    quote_ident,
    rename,
    run_on,
    seal,
    terminate_clients,
    unseal_and_drop,
    utc_now,
)
from devstack.usecases.dbclients import Client, describe_all, split


# --- snapshots (the `db` command) ----------------------------------------------------------
@dataclass(frozen=True)
class Snapshot:
    """A snapshot database and what its comment says about it."""

    name: str
    database: str
    size_bytes: int
    made_at: str
    made_from: str
    git: str


def current_branch(project_dir: Path) -> str:
    """The checked-out git branch (the default snapshot name), also before its first commit."""
    out = _git(project_dir, "branch", "--show-current")  # "" when detached
    if not out:
        raise ConfigError("no git branch to name the snapshot after", hint="give a NAME")
    return re.sub(r"[^A-Za-z0-9_]", "_", out)


def _git_commit(project_dir: Path) -> str:
    return _git(project_dir, "rev-parse", "--short", "HEAD")


def _git(project_dir: Path, *args: str) -> str:
    """`git -C project_dir ARGS`'s output, stripped; "" when git is missing or fails."""
    try:
        return subprocess.run(
            ["git", "-C", str(project_dir), *args], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def snapshot_database(name: str) -> str:
    """The database holding snapshot `name` (`-`, `/` and `.` read as `_`, as in the default
    name made from the git branch); ConfigError for a name that is not then an identifier
    (letters, digits, `_`; not starting with a digit; at most 59 characters)."""
    typed, name = name, re.sub(r"[-/.]", "_", name)
    if not SNAPSHOT_NAME.fullmatch(name):
        raise ConfigError(
            f"invalid snapshot name {typed!r}",
            hint="use letters, digits, _, -, / and ., not starting with a digit (at most 59 "
            "characters)",
        )
    return SNAPSHOT_PREFIX + name.lower()


async def _clients_of(conn: Any, database: str) -> list[Client]:
    """The client backends connected to `database` (not background workers, not us)."""
    rows = await conn.fetch(
        "SELECT pid, application_name, host(client_addr) AS address, backend_start "
        "FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid() "
        "AND backend_type = 'client backend' ORDER BY backend_start",
        database,
    )
    return [
        Client(int(r["pid"]), r["application_name"] or "", r["address"], r["backend_start"])
        for r in rows
    ]


async def _refuse_others(
    conn: Any, database: str, own: Mapping[str, str], force: bool, action: str
) -> None:
    """DatabaseError naming the clients of `database` that are not the stack's own, unless
    `force`."""
    _, others = split(await _clients_of(conn, database), own)
    if others and not force:
        raise DatabaseError(
            f"cannot {action}: {len(others)} other client(s) connected to {database}: "
            + describe_all(others),
            hint="close them, or add --force to disconnect them (the stack's own services' "
            "connections are closed and reopened by devstack)",
        )


async def _allow(conn: Any, database: str, allowed: bool) -> None:
    value = "true" if allowed else "false"
    await conn.execute(f"ALTER DATABASE {quote_ident(database)} WITH ALLOW_CONNECTIONS {value}")


async def _close_clients(
    conn: Any, database: str, own: Mapping[str, str], force: bool, action: str
) -> tuple[list[Client], list[Client]]:
    """Make `database` refuse new connections and close its clients: (the stack's own, the
    others). Refused (nothing changed) while others are connected, unless `force`. The
    caller allows connections again (or drops the database)."""
    await _refuse_others(conn, database, own, force, action)
    await _allow(conn, database, False)
    try:
        # again, now that nobody can connect: a client may have come in since the first look
        await _refuse_others(conn, database, own, force, action)
        ours, others = split(await _clients_of(conn, database), own)
        await terminate_clients(conn, database)
    except BaseException:
        await _allow(conn, database, True)
        raise
    return ours, others


@dataclass(frozen=True)
class Done:
    """What a `db` command did: the database involved, the stack's own containers whose
    connections it closed (one entry per connection), and other clients it disconnected."""

    database: str
    closed: tuple[str, ...] = ()
    disconnected: tuple[Client, ...] = ()


def _done(database: str, closed: tuple[list[Client], list[Client]], own: Mapping[str, str]) -> Done:
    ours, others = closed
    return Done(database, tuple(own[c.address] for c in ours if c.address), tuple(others))


def snapshot(
    settings: Settings, name: str, force: bool = False, own: Mapping[str, str] | None = None
) -> Done:
    """Copy the application's database into snapshot `name` (replacing an older one). `own`:
    the stack's own clients' addresses (IP -> container name), closed for the copy."""
    target = snapshot_database(name)
    server = Server.of(settings)
    source = server.database
    own = own or {}
    comment = json.dumps(
        {
            "devstack": "snapshot",
            "name": name,
            "of": source,
            "at": utc_now(),
            "git": _git_commit(settings.project_dir),
        }
    )

    async def work(conn: Any) -> Done:
        if not await exists(conn, source):
            raise DatabaseError(f"database {source} does not exist", hint="run `db reset`")
        await _refuse_others(conn, source, own, force, f"snapshot {source}")
        await unseal_and_drop(conn, target)
        closed = await _close_clients(conn, source, own, force, f"snapshot {source}")
        try:
            await clone_database(conn, target, source)
        finally:
            await _allow(conn, source, True)
        await seal(conn, target, comment)
        return _done(target, closed, own)

    return run_on(server, work)


def _staging(kind: str) -> str:
    """A scratch database of this process (dropped as a dead run's once the process is gone)."""
    return f"dst_b{os.getpid()}_{kind}"


async def _swap_in(
    conn: Any, staging: str, target: str, own: Mapping[str, str], force: bool, action: str
) -> Done:
    """Replace `target` by the complete database `staging`: the clients of `target` are
    closed (see _close_clients) and the names swapped, so `target` is missing for no time."""
    closed: tuple[list[Client], list[Client]] = ([], [])
    try:
        if await exists(conn, target):
            closed = await _close_clients(conn, target, own, force, action)
            old = _staging("old")
            await unseal_and_drop(conn, old)
            try:
                await rename(conn, target, old)
            except BaseException:
                await _allow(conn, target, True)
                raise
            try:
                await rename(conn, staging, target)
            except BaseException:  # put the old one back
                await rename(conn, old, target)
                await _allow(conn, target, True)
                raise
            await drop_database(conn, old)
        else:
            await rename(conn, staging, target)
    finally:
        await unseal_and_drop(conn, staging)  # gone after a rename; left by a failure
    return _done(target, closed, own)


def restore(
    settings: Settings, name: str, force: bool = False, own: Mapping[str, str] | None = None
) -> Done:
    """Replace the application's database by a copy of snapshot `name`."""
    source = snapshot_database(name)
    server = Server.of(settings)
    target = server.database
    own, staging = own or {}, _staging("new")
    action = f"restore over {target}"

    async def work(conn: Any) -> Done:
        if not await exists(conn, source):
            raise DatabaseError(f"no snapshot {name!r}", hint="see `python -m devstack db list`")
        if await exists(conn, target):
            await _refuse_others(conn, target, own, force, action)
        await unseal_and_drop(conn, staging)
        await clone_database(conn, staging, source)
        return await _swap_in(conn, staging, target, own, force, action)

    return run_on(server, work)


def drop_snapshot(settings: Settings, name: str) -> Done:
    """Delete snapshot `name`."""
    database = snapshot_database(name)

    async def work(conn: Any) -> None:
        if not await exists(conn, database):
            raise DatabaseError(f"no snapshot {name!r}", hint="see `python -m devstack db list`")
        await unseal_and_drop(conn, database)

    run_on(Server.of(settings), work)
    return Done(database)


def list_snapshots(settings: Settings) -> list[Snapshot]:
    """Every snapshot, oldest first."""

    async def work(conn: Any) -> list[Any]:
        return list(
            await conn.fetch(
                "SELECT datname, pg_database_size(oid) AS size, "
                "shobj_description(oid, 'pg_database') AS comment FROM pg_database "
                "WHERE datname LIKE 'dss\\_%'"
            )
        )

    snapshots = []
    for row in run_on(Server.of(settings), work):
        try:
            info = json.loads(row["comment"] or "{}")
        except ValueError:
            info = {}
        snapshots.append(
            Snapshot(
                info.get("name") or row["datname"].removeprefix(SNAPSHOT_PREFIX),
                row["datname"],
                int(row["size"]),
                info.get("at", ""),
                info.get("of", ""),
                info.get("git", ""),
            )
        )
    return sorted(snapshots, key=lambda s: (s.made_at, s.name))


def reset(settings: Settings, force: bool = False, own: Mapping[str, str] | None = None) -> Done:
    """Re-create the application's database from the migrations (an empty one when the
    stack has no migrations job), built beside it, then swapped in: the old one serves until
    the new one is complete."""
    server = Server.of(settings)
    target = server.database
    own, staging = own or {}, _staging("new")
    action = f"reset {target}"

    async def prepare(conn: Any) -> None:
        if await exists(conn, target):
            await _refuse_others(conn, target, own, force, action)
        await unseal_and_drop(conn, staging)
        await conn.execute(f"CREATE DATABASE {quote_ident(staging)}")

    run_on(server, prepare)
    try:
        migrate(settings, staging)
    except BaseException:
        run_on(server, lambda c: unseal_and_drop(c, staging))
        raise
    return run_on(server, lambda c: _swap_in(c, staging, target, own, force, action))
