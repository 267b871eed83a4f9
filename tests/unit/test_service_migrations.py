"""Migrations without a database: reading the scripts fast, and naming what failed.

The database side (upgrade, failure, rollback, the CLI's output) runs in the stack:
tests/stack/test_migrations.py.
"""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory

from service import config, migrate
from service.migrate import CannotTell, describe, read_scripts, to_run
from service.migrations import describe_error, failing_revision, unloadable_script

REPO = Path(__file__).resolve().parents[2]
ALEMBIC_INI = REPO / "alembic" / "alembic.ini"


def script(versions: Path, rev: str, down: object, body: str = "pass") -> Path:
    """Write a minimal migration script."""
    versions.mkdir(parents=True, exist_ok=True)
    path = versions / f"{rev}_step.py"
    path.write_text(
        f'"""step {rev}\n\nmore text\n"""\n\n'
        f"revision: str = {rev!r}\ndown_revision = {down!r}\n\n\n"
        f"def upgrade() -> None:\n    {body}\n"
    )
    return path


def test_the_repos_scripts_read_fast_agree_with_alembic() -> None:
    versions = migrate.versions_dir(ALEMBIC_INI)
    assert versions == ALEMBIC_INI.parent / "versions"
    revisions = read_scripts(versions)
    alembic_head = ScriptDirectory.from_config(Config(str(ALEMBIC_INI))).get_current_head()
    assert migrate.head_of(revisions) == alembic_head


def test_pending_revisions_oldest_first(tmp_path: Path) -> None:
    for rev, down in (("a1", None), ("b2", "a1"), ("c3", "b2")):
        script(tmp_path, rev, down)
    revisions = read_scripts(tmp_path)
    assert [r.id for r in to_run(revisions, set())] == ["a1", "b2", "c3"]
    assert [r.id for r in to_run(revisions, {"a1"})] == ["b2", "c3"]
    assert to_run(revisions, {"c3"}) == []
    assert describe(to_run(revisions, {"a1"})) == "migrations: 2 to run: b2 (step b2), c3 (step c3)"
    assert describe([], "c3") == "migrations: at head (c3)"


@pytest.mark.parametrize(
    "layout",
    [
        {"a1": None, "b2": "a1", "b3": "a1"},  # two heads
        {"a1": None, "b2": ("a1", "x9")},  # a merge
        {"a1": None, "b2": "zz"},  # a chain with a hole
    ],
)
def test_shapes_the_fast_path_leaves_to_alembic(tmp_path: Path, layout: dict[str, object]) -> None:
    for rev, down in layout.items():
        script(tmp_path, rev, down)
    with pytest.raises(CannotTell):
        to_run(read_scripts(tmp_path), set())


def test_unknown_database_version_and_unparsable_script(tmp_path: Path) -> None:
    script(tmp_path, "a1", None)
    with pytest.raises(CannotTell):
        to_run(read_scripts(tmp_path), {"gone"})
    (tmp_path / "b2_broken.py").write_text("revision = 'b2'\ndef upgrade(:\n")
    with pytest.raises(CannotTell):
        read_scripts(tmp_path)


def test_database_url_spellings_match_the_service_settings() -> None:
    assert migrate.POSTGRES_SCHEMES == config._POSTGRES_SCHEMES
    assert migrate.asyncpg_url("postgresql+asyncpg://u:p@h/d") == "postgresql://u:p@h/d"
    with pytest.raises(CannotTell):
        migrate.asyncpg_url("mysql://u:p@h/d")
    with pytest.raises(CannotTell):
        migrate.asyncpg_url(None)


def test_a_failing_revision_is_named_with_its_line(tmp_path: Path) -> None:
    path = script(tmp_path / "versions", "b2", "a1", body="raise RuntimeError('boom')")
    module = runpy.run_path(str(path))
    with pytest.raises(RuntimeError) as excinfo:
        module["upgrade"]()
    where = failing_revision(excinfo.value, tmp_path)
    assert where is not None
    assert where.startswith("revision b2 (") and where.endswith("b2_step.py, line 11)")
    assert failing_revision(excinfo.value, tmp_path / "elsewhere") is None


def test_a_script_with_a_syntax_error_is_named(tmp_path: Path) -> None:
    path = tmp_path / "versions" / "c3_bad.py"
    path.parent.mkdir()
    path.write_text("revision = 'c3'\n\ndef upgrade(:\n    pass\n")
    with pytest.raises(SyntaxError) as excinfo:
        runpy.run_path(str(path))
    found = unloadable_script(excinfo.value, tmp_path)
    assert found is not None and found.endswith("c3_bad.py, line 3: SyntaxError: invalid syntax")


class FakeAsyncpgError(Exception):
    """Shaped like asyncpg's errors: sqlstate, message, detail, hint."""

    sqlstate = "42P01"
    message = 'relation "nope" does not exist'
    detail = None
    hint = "check the name"


def test_the_innermost_database_error_is_described() -> None:
    class Wrapper(Exception):
        sqlstate = "XX000"  # a wrapper carrying a code too: the inner error wins

    try:
        try:
            raise FakeAsyncpgError("raw")
        except FakeAsyncpgError as inner:
            raise Wrapper("wrapped") from inner
    except Wrapper as outer:
        described = describe_error(outer)
    assert described == (
        'FakeAsyncpgError (SQLSTATE 42P01): relation "nope" does not exist; hint: check the name'
    )
    assert describe_error(ValueError("first line\nsecond")) == "ValueError: first line"
