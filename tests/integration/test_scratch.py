"""Per-test databases live in the scratch Postgres (devstack.usecases.scratch): a one-off copy
of the stack's database service with its data in memory, made once, reused, removed by `down`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import asyncpg
import docker.models.containers
import pytest

from tests.integration.conftest import Project
from tests.integration.test_pytest_plugin import databases, run_pytest, write_suite

FRESH_SUITE = """
import asyncio, os, pathlib, urllib.parse
import asyncpg, pytest

OUT = pathlib.Path(os.environ["SEEN_DIR"])

@pytest.mark.parametrize("n", range(6))
def test_fresh(devstack_fresh_dsn, n):
    async def check():
        conn = await asyncpg.connect(devstack_fresh_dsn)
        try:
            rows = await conn.fetchval("SELECT count(*) FROM alembic_version")
            await conn.execute("INSERT INTO alembic_version VALUES ('other')")
            tables = await conn.fetchval("SELECT to_regclass('task_records') IS NOT NULL")
            return rows, tables, await conn.fetchval("SHOW fsync")
        finally:
            await conn.close()
    rows, tables, fsync = asyncio.run(check())
    port = urllib.parse.urlsplit(devstack_fresh_dsn).port
    (OUT / f"{n}").write_text(f"{port} {rows} {tables} {fsync}")
"""


def scratches(project: Project) -> list[docker.models.containers.Container]:
    return [
        c
        for c in project.client.containers.list(
            all=True,
            filters={"label": [f"devstack.project={project.name}", "devstack.one-off"]},
        )
        if c.name.startswith(f"{project.name}-postgres-scratch-")
    ]


def scratch_sql(port: int, project: Project, query: str) -> object:
    values = project.values

    async def run() -> object:
        dsn = (
            f"postgresql://{values['POSTGRES_USER']}:{values['POSTGRES_PASSWORD']}"
            f"@127.0.0.1:{port}/postgres"
        )
        conn = await asyncpg.connect(dsn)
        try:
            return await conn.fetch(query)
        finally:
            await conn.close()

    return asyncio.run(run())


def test_per_test_databases_live_in_a_memory_server_made_once(
    make_project: Callable[..., Project], tmp_path: Path
) -> None:
    project = make_project()
    project.run("up", "--quiet")
    suite = write_suite(tmp_path, project)
    (suite / "test_db.py").write_text(FRESH_SUITE)

    output, seen = run_pytest(suite, project, "-n", "2")
    assert "6 passed" in output
    [scratch] = scratches(project)
    assert scratch.status == "running"
    # its data directory is memory: no volume, not even the image's anonymous one
    assert [m["Type"] for m in scratch.attrs["Mounts"]] == ["tmpfs"]
    port = int(scratch.ports["5432/tcp"][0]["HostPort"])
    assert port != project.postgres_port
    # every test: a fresh copy of the migrated template, on the scratch server, fsync off
    assert sorted(seen.values()) == [f"{port} 1 True off"] * 6
    assert not [n for n in databases(project) if n.startswith("dst_r")]
    rows = scratch_sql(port, project, "SELECT datname FROM pg_database")
    assert isinstance(rows, list)
    names = {r[0] for r in rows}
    assert not [n for n in names if n.startswith("dst_r")]
    [template] = [n for n in names if n.startswith("dst_tpl_")]
    assert template in databases(project)  # the stack's own template, copied under its name

    # reused by the next run; the clones a dead run left there are dropped
    scratch_sql(port, project, "CREATE DATABASE dst_r999999999_dead_t1")
    output, seen = run_pytest(suite, project)
    assert "6 passed" in output
    [again] = scratches(project)
    assert again.id == scratch.id
    rows = scratch_sql(port, project, "SELECT datname FROM pg_database")
    assert isinstance(rows, list) and "dst_r999999999_dead_t1" not in {r[0] for r in rows}

    # stopped (its memory is gone): the next run makes a new one
    scratch.stop(timeout=5)
    output, seen = run_pytest(suite, project)
    assert "6 passed" in output
    [new] = scratches(project)
    assert new.id != scratch.id and new.status == "running"

    # `status` names it beside the services; `down` removes it
    assert f"one-off: {new.name} (" in project.run("status").stdout
    project.run("down")
    assert scratches(project) == []


RESTART_SUITE = (
    FRESH_SUITE.replace("range(6)", "range(2)")
    + """

def test_restart_the_scratch_server(devstack_fresh_dsn):
    import docker

    client = docker.from_env()
    project = os.environ["SCRATCH_PROJECT"]
    [scratch] = [
        c for c in client.containers.list(filters={"label": f"devstack.project={project}"})
        if c.name.startswith(f"{project}-postgres-scratch-")
    ]
    scratch.restart(timeout=5)  # its memory is gone, and Docker publishes a new host port


@pytest.mark.parametrize("n", range(2, 4))
def test_fresh_after(devstack_fresh_dsn, n):
    test_fresh(devstack_fresh_dsn, n)
"""
)


def test_a_scratch_server_restarted_mid_run_is_made_whole_again(
    make_project: Callable[..., Project], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Restarted, the scratch server has lost its template (memory) and moved to a new port:
    the next test's clone finds it again and copies the template in once, instead of every
    test waiting a minute for the old port and failing."""
    project = make_project()
    project.run("up", "--quiet")
    suite = write_suite(tmp_path, project)
    (suite / "test_db.py").write_text(RESTART_SUITE)
    monkeypatch.setenv("SCRATCH_PROJECT", project.name)  # the suite's pytest inherits it
    started = time.monotonic()
    output, seen = run_pytest(suite, project)
    took = time.monotonic() - started
    assert "5 passed" in output, output
    ports = {name: text.split()[0] for name, text in seen.items()}
    assert ports["0"] == ports["1"] != ports["2"] == ports["3"], seen
    assert sorted(text.split(" ", 1)[1] for text in seen.values()) == ["1 True off"] * 4
    assert took < 45, f"the run took {took:.0f}s: it waited for the old port"
