"""Pure parts of devstack.usecases.databases: snapshot names, the migrations hash, run names."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from devstack.declare.capabilities import Migrations
from devstack.declare.settings import load_settings
from devstack.errors import ConfigError
from devstack.usecases.databases import (
    EMPTY_TEMPLATE,
    RUN_DB,
    clone_database,
    migrate,
    quote_ident,
    template_name,
)
from devstack.usecases.snapshots import current_branch, snapshot_database

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["main", "feature_x", "_x", "A1"])
def test_valid_snapshot_names(name: str) -> None:
    assert snapshot_database(name) == f"dss_{name.lower()}"


@pytest.mark.parametrize(
    ("name", "database"),
    [("before-x", "dss_before_x"), ("feature/add-x", "dss_feature_add_x"), ("v1.2", "dss_v1_2")],
)
def test_names_like_a_git_branch_are_the_snapshot_the_branch_names(
    name: str, database: str
) -> None:
    """`db snapshot` on branch feature/add-x makes feature_add_x: the same name typed as
    the branch is spelled finds it."""
    assert snapshot_database(name) == database


@pytest.mark.parametrize("name", ["", "1abc", "x;drop", 'a"b', "x" * 60, "é"])
def test_invalid_snapshot_names_are_config_errors(name: str) -> None:
    with pytest.raises(ConfigError, match="invalid snapshot name"):
        snapshot_database(name)


def migrations_digest(project_dir: Path) -> str:
    return Migrations("alembic", "DATABASE_URL", "postgresql://h/{database}").digest(project_dir)


def test_the_migrations_hash_follows_the_migration_files(tmp_path: Path) -> None:
    shutil.copytree(REPO / "alembic", tmp_path / "alembic")
    before = migrations_digest(tmp_path)
    assert before == migrations_digest(tmp_path)  # stable
    (tmp_path / "alembic/README.md").write_text("docs do not count")
    assert migrations_digest(tmp_path) == before
    (tmp_path / "alembic/versions/0002_x.py").write_text('revision = "0002"\n')
    assert migrations_digest(tmp_path) != before


def test_only_run_databases_carry_a_pid() -> None:
    assert RUN_DB.match("dst_r123_ab12_gw0").group(1) == "123"  # type: ignore[union-attr]
    assert RUN_DB.match("dst_b77_0123456789ab").group(1) == "77"  # type: ignore[union-attr]
    for other in ("dst_tpl_0123456789ab", "dss_main", "devstack", "dst_rx_1"):
        assert RUN_DB.match(other) is None


def test_identifiers_are_quoted() -> None:
    assert quote_ident('a"b') == '"a""b"'


def test_a_stack_without_a_migrations_job_has_nothing_to_migrate(tmp_path: Path) -> None:
    """examples/minimal (no migrations job): the template is an empty database, and `db
    reset` / a template build migrate nothing (was: ConfigError, `db reset` exited 2)."""
    project = tmp_path / "minimal"
    shutil.copytree(REPO / "examples/minimal", project)
    (project / ".env").write_text("DEVSTACK_PROJECT=mini\n")
    settings = load_settings(project, project / ".env", environ={})
    assert template_name(settings) == EMPTY_TEMPLATE
    migrate(settings, "dst_b1_empty")  # returns at once: no container, no Docker


class RecordingConnection:
    """Records the SQL it is given; answers the server version asyncpg would."""

    def __init__(self, major: int) -> None:
        self.major = major
        self.sql: list[str] = []

    def get_server_version(self) -> SimpleNamespace:
        return SimpleNamespace(major=self.major)

    async def execute(self, sql: str) -> None:
        self.sql.append(sql)


@pytest.mark.parametrize(
    ("major", "file_copy", "suffix"),
    [
        (17, True, " STRATEGY FILE_COPY"),
        (15, True, " STRATEGY FILE_COPY"),
        (14, True, ""),
        (17, False, ""),
    ],
)
def test_a_file_copy_clone_names_its_strategy_only_where_postgres_has_one(
    major: int, file_copy: bool, suffix: str
) -> None:
    conn = RecordingConnection(major)
    asyncio.run(clone_database(conn, "dst_r1_x", "dst_tpl_a", file_copy=file_copy))
    assert conn.sql == [f'CREATE DATABASE "dst_r1_x" TEMPLATE "dst_tpl_a"{suffix}']


def test_the_default_snapshot_name_is_the_branch_even_before_its_first_commit(
    tmp_path: Path,
) -> None:
    subprocess.run(["git", "init", "-q", "-b", "feature/add-x", str(tmp_path)], check=True)
    assert current_branch(tmp_path) == "feature_add_x"
