"""Alembic's environment (called by ``alembic/env.py``): async, asyncpg, clear failures.

- The URL is ``AI_AGENTS_DATABASE_URL`` (any accepted spelling, used as
  ``postgresql+asyncpg://``); a bad or missing value exits with the service's one-line error.
- Each revision runs in its own transaction: a failing one is rolled back whole (PostgreSQL's
  DDL is transactional) and the revisions before it in the same run stay applied, so fixing
  the file and running again resumes from there.
- A failure raises ``MigrationError`` (an Alembic ``CommandError``: the CLI prints
  ``FAILED: <message>`` without a traceback and exits non-zero). The message names the failing
  revision and its file, and the database's error (class, SQLSTATE, message, statement).
"""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from alembic.runtime.environment import EnvironmentContext
from alembic.util import CommandError
from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from service.config import get_settings, redact_url
from service.models import metadata

CONNECT_TIMEOUT_S = 5.0
MAX_STATEMENT_CHARS = 300


class MigrationError(CommandError):
    """A migration could not run: names the revision, its file and the database's error."""


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, then what it wraps (``orig``, cause, context), each once."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)
        todo += [orig if isinstance(orig, BaseException) else None]
        todo += [current.__cause__, current.__context__]


def _one_line(text: str) -> str:
    return " ".join(text.split())


def describe_error(exc: BaseException) -> str:
    """The database's own error if there is one (class, SQLSTATE, message), else ``Type: text``.

    The innermost error carrying a SQLSTATE wins: asyncpg's, not the wrappers around it.
    """
    coded = [(e, getattr(e, "sqlstate", None)) for e in _chain(exc)]
    database_errors = [(e, code) for e, code in coded if isinstance(code, str) and code]
    if database_errors:
        error, sqlstate = database_errors[-1]
        message = getattr(error, "message", None) or str(error)
        text = f"{type(error).__name__} (SQLSTATE {sqlstate}): {_one_line(str(message))}"
        for extra in ("detail", "hint"):
            value = getattr(error, extra, None)
            if value:
                text += f"; {extra}: {_one_line(str(value))}"
        return text
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else "no details"
    return f"{type(exc).__name__}: {first_line}"


def _statement(exc: BaseException) -> str | None:
    """The SQL statement that failed, if SQLAlchemy recorded one (shortened)."""
    for error in _chain(exc):
        statement = getattr(error, "statement", None)
        if isinstance(statement, str) and statement.strip():
            text = _one_line(statement)
            if len(text) > MAX_STATEMENT_CHARS:
                text = text[: MAX_STATEMENT_CHARS - 3] + "..."
            return text
    return None


def _display(path: Path) -> str:
    """``path`` relative to the working directory when it is below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _migration_file(filename: str | None, script_dir: Path) -> Path | None:
    """``filename`` if it is a migration script (under ``script_dir``, not ``env.py``)."""
    if not filename:
        return None
    path = Path(filename).resolve()
    if path.is_relative_to(script_dir.resolve()) and path.name != "env.py":
        return path
    return None


def unloadable_script(exc: BaseException, script_dir: Path) -> str | None:
    """``alembic/versions/0002_x.py, line 12: SyntaxError: invalid syntax`` for a script
    that does not compile; None for any other failure."""
    for error in _chain(exc):
        if isinstance(error, SyntaxError):
            path = _migration_file(error.filename, script_dir)
            if path is not None:
                return f"{_display(path)}, line {error.lineno}: SyntaxError: {error.msg}"
    return None


def failing_revision(exc: BaseException, script_dir: Path) -> str | None:
    """``revision 0002 (alembic/versions/0002_x.py, line 12)`` for the migration that raised:
    the innermost traceback frame in a migration script."""
    for error in _chain(exc):
        found: str | None = None
        for frame, lineno in traceback.walk_tb(error.__traceback__):
            path = _migration_file(frame.f_code.co_filename, script_dir)
            if path is not None:
                revision = frame.f_globals.get("revision")
                where = f"{_display(path)}, line {lineno}"
                found = f"revision {revision} ({where})" if revision else f"file {where}"
        if found:
            return found
    return None


def _configure(context: EnvironmentContext, **kwargs: Any) -> None:
    context.configure(
        target_metadata=metadata,
        transaction_per_migration=True,
        compare_type=True,
        **kwargs,
    )


def _run(context: EnvironmentContext, connection: Connection | None = None) -> None:
    """Run the migrations; any failure becomes a MigrationError naming the revision."""
    applied: list[str] = []

    def track(*, step: Any, **_: Any) -> None:
        applied.extend(step.up_revision_ids)  # the revision this step ran (up or down)

    if connection is None:
        _configure(
            context,
            url=get_settings().sqlalchemy_url,
            literal_binds=True,
            dialect_opts={"paramstyle": "named"},
        )
    else:
        _configure(context, connection=connection, on_version_apply=track)
    try:
        with context.begin_transaction():
            context.run_migrations()
    except CommandError:
        raise
    except Exception as exc:
        script_dir = Path(context.script.dir)
        unloadable = unloadable_script(exc, script_dir)
        if unloadable:
            raise MigrationError(f"cannot load {unloadable}\nno revision ran") from exc
        where = failing_revision(exc, script_dir) or "a migration"
        lines = [f"{where} failed: {describe_error(exc)}"]
        statement = _statement(exc)
        if statement:
            lines.append(f"statement: {statement}")
        if applied:
            lines.append(f"completed before it in this run (kept): {', '.join(applied)}")
        lines.append("nothing of the failing revision was applied (one transaction each)")
        raise MigrationError("\n".join(lines)) from exc


async def _run_online(context: EnvironmentContext) -> None:
    settings = get_settings()
    engine = create_async_engine(
        settings.sqlalchemy_url,
        poolclass=pool.NullPool,
        connect_args={"timeout": CONNECT_TIMEOUT_S},
    )
    try:
        try:
            connection = await engine.connect()
        except Exception as exc:
            raise MigrationError(
                f"cannot connect to the database {redact_url(settings.database_url)}: "
                f"{describe_error(exc)}"
            ) from exc
        try:
            await connection.run_sync(lambda sync: _run(context, sync))
        finally:
            await connection.close()
    finally:
        await engine.dispose()


def run_migrations(context: EnvironmentContext) -> None:
    """What ``env.py`` does: offline (``--sql``) prints SQL, online runs it on the database."""
    if context.is_offline_mode():
        _run(context)
    else:
        asyncio.run(_run_online(context))
