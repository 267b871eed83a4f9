"""Alembic in the stack: the database is at head, the schema matches the models, and a failing
migration names its revision and the database's error and leaves nothing of itself behind."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from alembic.command import check, upgrade
from alembic.config import Config
from alembic.script import ScriptDirectory

from service.config import Settings
from service.migrations import MigrationError

ALEMBIC_INI = Path(os.environ.get("ALEMBIC_CONFIG", "alembic/alembic.ini"))

FAILING_REVISION = '''"""creates a table, then fails in the database"""

import sqlalchemy as sa

from alembic import op

revision = "9002"
down_revision = "{head}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("half_done", sa.Column("id", sa.Integer, primary_key=True))
    op.execute("ALTER TABLE no_such_table ADD COLUMN x integer")


def downgrade() -> None:
    op.drop_table("half_done")
'''


def head() -> str:
    """The newest revision in the migration scripts."""
    found = ScriptDirectory.from_config(Config(str(ALEMBIC_INI))).get_current_head()
    assert found is not None
    return found


def test_database_is_at_head(sql: Callable[..., list[Any]]) -> None:
    assert [row["version_num"] for row in sql("SELECT version_num FROM alembic_version")] == [
        head()
    ]


def test_schema_matches_the_models() -> None:
    """``alembic check``: autogenerate finds nothing to add to the migrations."""
    check(Config(str(ALEMBIC_INI)))


def test_task_records_columns(sql: Callable[..., list[Any]]) -> None:
    rows = sql(
        "SELECT column_name, is_nullable FROM information_schema.columns "
        "WHERE table_name = 'task_records' ORDER BY ordinal_position"
    )
    assert [(r["column_name"], r["is_nullable"]) for r in rows] == [
        ("id", "NO"),
        ("message", "NO"),
        ("worker", "NO"),
        ("attempts", "NO"),
        ("created_at", "NO"),
        ("finished_at", "YES"),
    ]


async def _execute(url: str, statement: str) -> None:
    conn = await asyncpg.connect(url, timeout=5)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def _schema(url: str) -> tuple[list[str], list[str]]:
    conn = await asyncpg.connect(url, timeout=5)
    try:
        names = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
        )
        versions = []
        if await conn.fetchval("SELECT to_regclass('alembic_version') IS NOT NULL"):
            versions = await conn.fetch("SELECT version_num FROM alembic_version")
        return [r[0] for r in names], [r[0] for r in versions]
    finally:
        await conn.close()


def schema(url: str) -> tuple[list[str], list[str]]:
    """(tables, Alembic versions) of the database at ``url``."""
    return asyncio.run(_schema(url))


@pytest.fixture
def scratch_db(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An empty database of its own; AI_AGENTS_DATABASE_URL points at it during the test."""
    name = f"stack_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_execute(settings.database_url, f'CREATE DATABASE "{name}"'))
    url = settings.database_url.rsplit("/", 1)[0] + f"/{name}"
    monkeypatch.setenv("AI_AGENTS_DATABASE_URL", url)
    try:
        yield url
    finally:
        drop = f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
        asyncio.run(_execute(settings.database_url, drop))


@pytest.fixture
def broken_scripts(tmp_path: Path) -> Path:
    """A copy of the migrations plus revision 9002, which fails in the database."""
    scripts = tmp_path / "alembic"
    shutil.copytree(ALEMBIC_INI.parent, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    (scripts / "versions" / "9002_fails.py").write_text(FAILING_REVISION.format(head=head()))
    return scripts / "alembic.ini"


def test_failing_migration_names_revision_and_error_and_rolls_back(
    scratch_db: str, broken_scripts: Path
) -> None:
    with pytest.raises(MigrationError) as excinfo:
        upgrade(Config(str(broken_scripts)), "head")
    message = str(excinfo.value)
    assert "revision 9002 (" in message and "9002_fails.py, line " in message
    assert "UndefinedTableError (SQLSTATE 42P01)" in message
    assert "no_such_table" in message  # the statement
    assert f"completed before it in this run (kept): {head()}" in message
    # Revisions before it are applied; nothing of 9002 is (its table was rolled back).
    assert schema(scratch_db) == (["alembic_version", "task_records"], [head()])

    # Fixed, the same run converges.
    fixed = broken_scripts.parent / "versions" / "9002_fails.py"
    fixed.write_text(fixed.read_text().replace("no_such_table", "task_records"))
    upgrade(Config(str(broken_scripts)), "head")
    assert schema(scratch_db) == (["alembic_version", "half_done", "task_records"], ["9002"])


def migrate(*args: str, config: Path = ALEMBIC_INI) -> subprocess.CompletedProcess[str]:
    """``python -m service.migrate ARGS`` with ``config`` as Alembic's configuration."""
    return subprocess.run(
        [sys.executable, "-m", "service.migrate", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "ALEMBIC_CONFIG": str(config)},
    )


def test_migrate_at_head_is_a_fast_no_op() -> None:
    for args in ((), ("check",)):
        result = migrate(*args)
        assert (result.returncode, result.stdout) == (0, f"migrations: at head ({head()})\n")
        assert "alembic" not in result.stderr.lower()  # answered without running Alembic


def test_migrate_check_lists_what_would_run_then_upgrade_converges(scratch_db: str) -> None:
    check = migrate("check")
    assert check.returncode == 1
    assert check.stdout.startswith(f"migrations: 1 to run: {head()} (")
    upgraded = migrate()
    assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
    assert f"Running upgrade  -> {head()}" in upgraded.stderr
    assert migrate("check").returncode == 0


def test_migrate_prints_the_failure_without_traceback(
    scratch_db: str, broken_scripts: Path
) -> None:
    result = migrate(config=broken_scripts)
    output = result.stdout + result.stderr
    assert result.returncode == 1
    assert "FAILED: revision 9002 (" in output
    assert "SQLSTATE 42P01" in output
    assert "Traceback" not in output
    assert output.count("SQLSTATE 42P01") == 1  # printed once, not logged again


def test_syntax_error_names_the_file(scratch_db: str, broken_scripts: Path) -> None:
    broken = broken_scripts.parent / "versions" / "9002_fails.py"
    lines = broken.read_text().splitlines()
    line = lines.index("def upgrade() -> None:") + 1
    lines[line - 1] = "def upgrade( -> None:"
    broken.write_text("\n".join(lines) + "\n")
    with pytest.raises(MigrationError) as excinfo:
        upgrade(Config(str(broken_scripts)), "head")
    assert str(excinfo.value).startswith("cannot load ")
    assert f"9002_fails.py, line {line}: SyntaxError: " in str(excinfo.value)
    assert schema(scratch_db)[1] == []  # no revision applied: the scripts did not load


def test_unreachable_database_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AI_AGENTS_DATABASE_URL", "postgresql://nobody:pw@127.0.0.1:1/nothing")
    with pytest.raises(MigrationError) as excinfo:
        upgrade(Config(str(ALEMBIC_INI)), "head")
    message = str(excinfo.value)
    assert message.startswith("cannot connect to the database postgresql://nobody:***@127.0.0.1:1/")
    assert ":pw@" not in message
