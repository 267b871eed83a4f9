"""``python -m service.migrate``: Alembic's ``upgrade head``, with a fast answer when at head.

    python -m service.migrate          upgrade to head (the migrate job's command)
    python -m service.migrate check    exit 0: at head; 1: revisions to run (listed); 2: cannot tell
    python -m service.migrate ARGS...  any other Alembic command line, e.g. ``current``

Importing Alembic and SQLAlchemy costs about 0.35 s. When the migration scripts can be read
without them (one head, plain ``revision``/``down_revision`` assignments, no merge) and the
database answers, the head is compared with ``alembic_version`` through asyncpg alone. Any
doubt (a script that does not parse, several heads, a merge, no database, an odd
``AI_AGENTS_DATABASE_URL``) falls back to Alembic itself, which then does the work or reports
the problem. Alembic's configuration is ``$ALEMBIC_CONFIG`` (the image sets it), else
``alembic/alembic.ini``.
"""

from __future__ import annotations

import ast
import asyncio
import configparser
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_CONFIG = "alembic/alembic.ini"
CONNECT_TIMEOUT_S = 5.0
# The spellings service.config accepts for AI_AGENTS_DATABASE_URL (a unit test keeps them equal).
POSTGRES_SCHEMES = frozenset({"postgresql", "postgres", "postgresql+asyncpg"})

AT_HEAD, PENDING, UNKNOWN = 0, 1, 2


class CannotTell(Exception):
    """The fast path cannot decide; Alembic must."""


@dataclass(frozen=True)
class Revision:
    """One migration script, as far as ordering goes."""

    id: str
    down: str | None
    message: str


def config_path() -> Path:
    """Alembic's ini file."""
    return Path(os.environ.get("ALEMBIC_CONFIG") or DEFAULT_CONFIG)


def versions_dir(ini: Path) -> Path:
    """``<script_location>/versions`` from the ini; CannotTell for layouts this does not read."""
    parser = configparser.ConfigParser(defaults={"here": str(ini.resolve().parent)})
    if not parser.read(ini):
        raise CannotTell(f"no Alembic configuration at {ini}")
    try:
        section = parser["alembic"]
        location = section["script_location"]
    except KeyError as exc:
        raise CannotTell(f"{ini}: no [alembic] script_location") from exc
    if section.get("version_locations") or ":" in location.replace(":\\", ""):
        raise CannotTell("version_locations or a package script_location")
    path = Path(location)
    return (path if path.is_absolute() else ini.parent / path) / "versions"


def _literal(value: ast.expr) -> Any:
    return ast.literal_eval(value)


def read_revision(path: Path) -> Revision:
    """``revision``, ``down_revision`` and the docstring's first line of one script."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
        found: dict[str, Any] = {}
        for node in tree.body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target, value = node.targets[0], node.value
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                target, value = node.target, node.value
            else:
                continue
            if isinstance(target, ast.Name) and target.id in {"revision", "down_revision"}:
                found[target.id] = _literal(value)
    except (OSError, SyntaxError, ValueError) as exc:
        raise CannotTell(f"{path.name}: {type(exc).__name__}") from exc
    revision, down = found.get("revision"), found.get("down_revision", ...)
    if not isinstance(revision, str) or not (down is None or isinstance(down, str)):
        raise CannotTell(f"{path.name}: no plain revision/down_revision (a merge?)")
    docstring = (ast.get_docstring(tree) or "").strip()
    return Revision(revision, down, docstring.splitlines()[0] if docstring else "")


def read_scripts(versions: Path) -> dict[str, Revision]:
    """Every script in ``versions`` by revision id."""
    revisions: dict[str, Revision] = {}
    for path in sorted(versions.glob("*.py")):
        revision = read_revision(path)
        if revision.id in revisions:
            raise CannotTell(f"revision {revision.id} is defined twice")
        revisions[revision.id] = revision
    return revisions


def head_of(revisions: dict[str, Revision]) -> str:
    """The one revision no other revises; CannotTell if there are several (or none)."""
    heads = set(revisions) - {r.down for r in revisions.values() if r.down}
    if len(heads) != 1:
        raise CannotTell(f"{len(heads)} heads")
    return heads.pop()


def to_run(revisions: dict[str, Revision], current: set[str]) -> list[Revision]:
    """The revisions ``upgrade head`` would run from ``current``, oldest first."""
    head = head_of(revisions)
    if len(current) > 1 or not current <= set(revisions):
        raise CannotTell("the database is at a version the scripts do not know")
    pending: list[Revision] = []
    step: str | None = head
    while step is not None and step not in current:
        if step not in revisions or len(pending) > len(revisions):
            raise CannotTell(f"revision {step} is missing from the chain")
        pending.append(revisions[step])
        step = revisions[step].down
    return pending[::-1]


def asyncpg_url(value: str | None) -> str:
    """``AI_AGENTS_DATABASE_URL`` as asyncpg wants it; CannotTell if it is not one of ours."""
    scheme, sep, rest = (value or "").strip().partition("://")
    if not sep or scheme.lower() not in POSTGRES_SCHEMES:
        raise CannotTell("AI_AGENTS_DATABASE_URL is missing or not postgresql://")
    return f"postgresql://{rest}"


async def _database_versions(url: str) -> set[str]:
    import asyncpg

    try:
        conn = await asyncpg.connect(url, timeout=CONNECT_TIMEOUT_S)
    except Exception as exc:
        raise CannotTell(f"database: {type(exc).__name__}") from exc
    try:
        if not await conn.fetchval("SELECT to_regclass('alembic_version') IS NOT NULL"):
            return set()
        return {row[0] for row in await conn.fetch("SELECT version_num FROM alembic_version")}
    finally:
        await conn.close()


def pending_revisions() -> tuple[list[Revision], str]:
    """What ``upgrade head`` would run, and the head, without Alembic; CannotTell when unsure."""
    revisions = read_scripts(versions_dir(config_path()))
    url = asyncpg_url(os.environ.get("AI_AGENTS_DATABASE_URL"))
    return to_run(revisions, asyncio.run(_database_versions(url))), head_of(revisions)


def describe(pending: list[Revision], head: str | None = None) -> str:
    """``migrations: at head (0001)`` or ``migrations: 2 to run: 0002 (add x), 0003``."""
    if not pending:
        return f"migrations: at head ({head})" if head else "migrations: at head"
    names = ", ".join(f"{r.id} ({r.message})" if r.message else r.id for r in pending)
    return f"migrations: {len(pending)} to run: {names}"


def _alembic(argv: list[str]) -> int:
    """Run Alembic's command line; its failures (``sys.exit(-1)``) become exit status 1."""
    from alembic.config import main

    try:
        main(argv=argv, prog="alembic")
    except SystemExit as exc:
        if exc.code in (0, None):
            return 0
        return 1 if isinstance(exc.code, int) else _fail(str(exc.code))
    return 0


def _fail(message: str) -> int:
    print(message, file=sys.stderr)
    return 1


def _check_with_alembic() -> int:
    """The slow, always-right answer for ``check``."""
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy.ext.asyncio import create_async_engine

    from service.config import get_settings

    script = ScriptDirectory.from_config(Config(str(config_path())))

    async def current() -> set[str]:
        engine = create_async_engine(get_settings().sqlalchemy_url)
        try:
            async with engine.connect() as conn:
                heads = await conn.run_sync(
                    lambda sync: MigrationContext.configure(sync).get_current_heads()
                )
                return set(heads)
        finally:
            await engine.dispose()

    try:
        revisions = list(script.iterate_revisions("heads", tuple(asyncio.run(current()))))
    except Exception as exc:
        print(f"migrations: cannot tell: {type(exc).__name__}: {exc}".splitlines()[0])
        return UNKNOWN
    pending = [Revision(r.revision, None, (r.doc or "").strip()) for r in reversed(revisions)]
    print(describe(pending, script.get_current_head()))
    return PENDING if pending else AT_HEAD


def main(argv: list[str] | None = None) -> int:
    """See the module docstring."""
    args = sys.argv[1:] if argv is None else argv
    if args in ([], ["upgrade", "head"]):
        try:
            pending, head = pending_revisions()
            if not pending:
                print(describe([], head))
                return 0
        except CannotTell:
            pass
        return _alembic(["upgrade", "head"])
    if args == ["check"]:
        try:
            pending, head = pending_revisions()
        except CannotTell:
            return _check_with_alembic()
        print(describe(pending, head))
        return PENDING if pending else AT_HEAD
    return _alembic(args)


if __name__ == "__main__":
    sys.exit(main())
