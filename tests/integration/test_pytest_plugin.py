"""The pytest plugin and `db` snapshots against a real engine: pytest runs in a subprocess on
a scratch suite, against an isolated test project (its own name and ports, removed after)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import asyncpg

from devstack.declare.settings import load_settings
from devstack.usecases import databases as dbs
from devstack.usecases.clone_pool import AHEAD, ClonePool
from tests.integration.conftest import OWN_PREFIXES, REPO_ROOT, Project

SUITE = """
import asyncio, os, pathlib, time

OUT = pathlib.Path(os.environ["SEEN_DIR"])

def test_worker_database(devstack_dsn, devstack_pg_connect, devstack_redis, devstack_redis_prefix):
    async def check():
        async with devstack_pg_connect() as conn:
            name = await conn.fetchval("SELECT current_database()")
            # migrated: the template carries the tables
            assert await conn.fetchval("SELECT to_regclass('task_records') IS NOT NULL")
            await conn.execute("INSERT INTO alembic_version VALUES (md5(now()::text)::varchar(9))")
            return name
    name = asyncio.run(check())
    devstack_redis.set(devstack_redis_prefix + "k", "v")
    db = devstack_redis.connection_pool.connection_kwargs["db"]
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    (OUT / f"{os.getpid()}-{worker}").write_text(f"{name} {db}")
    # a barrier: concurrent runs hold their databases at the same time here
    deadline = time.monotonic() + 120
    while len(list(OUT.iterdir())) < int(os.environ["BARRIER"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(list(OUT.iterdir())) >= int(os.environ["BARRIER"])

def test_fresh_database(devstack_fresh_dsn):
    import asyncpg
    async def check():
        conn = await asyncpg.connect(devstack_fresh_dsn)
        try:
            return await conn.fetchval("SELECT count(*) FROM alembic_version")
        finally:
            await conn.close()
    assert asyncio.run(check()) == 1  # nothing another test wrote

def test_another(devstack_redis, devstack_redis_prefix):
    assert devstack_redis.get(devstack_redis_prefix + "k") is None  # emptied between tests
"""

BROKEN = '''"""fails on any database but the application's (a template build)"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"

def upgrade() -> None:
    name = op.get_bind().execute(sa.text("SELECT current_database()")).scalar()
    if name != "testdb":
        raise RuntimeError("boom-in-template-build")

def downgrade() -> None:
    pass
'''


def plugin_arg() -> str:
    """`-p devstack` once the entry point is installed (naming the module as well would
    register it twice); the module itself before (an editable install of an older tree)."""
    from importlib.metadata import entry_points

    installed = any(ep.name == "devstack" for ep in entry_points(group="pytest11"))
    return "devstack" if installed else "devstack.pytest_plugin"


# CPython 3.11's ast.parse is not thread-safe (gh-106905: "AST constructor recursion depth
# mismatch"), and pytest parses each module it rewrites (the plugin's own, test files): the
# suite's conftest writes down any module pytest rewrote off the main thread
OFF_MAIN = """
import os, threading
from _pytest.assertion import rewrite

_exec_module = rewrite.AssertionRewritingHook.exec_module

def exec_module(self, module):
    thread = threading.current_thread()
    if thread is not threading.main_thread():
        with open(os.environ["OFF_MAIN"], "a") as out:
            out.write(f"{module.__name__} on {thread.name}\\n")
    return _exec_module(self, module)

rewrite.AssertionRewritingHook.exec_module = exec_module

if os.environ.get("BREAK_CLAIM"):  # an unforeseen failure in the controller's preparation
    from devstack.usecases import spares

    def claim(*args, **kwargs):
        raise RuntimeError("boom-in-claim")

    spares.claim = claim
"""


def write_suite(base: Path, project: Project, project_dir: Path = REPO_ROOT) -> Path:
    suite = base / "suite"
    suite.mkdir(parents=True, exist_ok=True)
    (suite / "test_db.py").write_text(SUITE)
    (suite / "conftest.py").write_text(OFF_MAIN)
    (suite / "pytest.ini").write_text(
        textwrap.dedent(f"""\
            [pytest]
            devstack = true
            devstack_project_dir = {project_dir}
            """)
    )
    return suite


def pytest_cmd(
    suite: Path, project: Project, *args: str, seen: Path | None = None, barrier: int = 1
) -> tuple[list[str], dict[str, str], Path]:
    if seen is None:
        seen = suite / f"seen-{len(list(suite.glob('seen-*')))}"
        seen.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(OWN_PREFIXES)}
    env.pop("PYTEST_XDIST_WORKER", None)
    env.update(
        PYTHONPATH=str(REPO_ROOT),
        SEEN_DIR=str(seen),
        OFF_MAIN=str(suite / "off-main.txt"),
        BARRIER=str(barrier),
        NO_COLOR="1",
        PYTEST_ADDOPTS="",
    )
    command = [sys.executable, "-m", "pytest", "-p", plugin_arg()]
    command += ["-p", "no:cacheprovider", "-q", "-c", str(suite / "pytest.ini")]
    command += ["--rootdir", str(suite), "--devstack-env-file", str(project.env_file)]
    return [*command, *args], env, seen


def run_pytest(suite: Path, project: Project, *args: str) -> tuple[str, dict[str, str]]:
    command, env, seen = pytest_cmd(suite, project, *args)
    result = subprocess.run(
        command, cwd=suite, env=env, capture_output=True, text=True, timeout=900
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output, {p.name: p.read_text() for p in seen.iterdir()}


def databases(project: Project) -> set[str]:
    async def names() -> set[str]:
        conn = await asyncpg.connect(project.dsn)
        try:
            return {r[0] for r in await conn.fetch("SELECT datname FROM pg_database")}
        finally:
            await conn.close()

    return asyncio.run(names())


def sql(project: Project, query: str) -> object:
    async def run() -> object:
        conn = await asyncpg.connect(project.dsn)
        try:
            if query.startswith("SELECT"):
                return await conn.fetchval(query)
            return await conn.execute(query)
        finally:
            await conn.close()

    return asyncio.run(run())


def running(project: Project) -> bool:
    return any(
        c.status == "running"
        for c in project.client.containers.list(
            filters={"label": [f"devstack.project={project.name}"]}
        )
    )


def test_plugin_starts_reuses_isolates_and_cleans(
    make_project: Callable[..., Project], tmp_path: Path
) -> None:
    project = make_project()
    suite = write_suite(tmp_path, project)

    # not running: the plugin brings the stack up; --devstack-keep leaves it running
    output, seen = run_pytest(suite, project, "--devstack-keep")
    assert "starting the stack" in output and "3 passed" in output
    assert running(project)
    assert not (suite / "off-main.txt").exists(), (suite / "off-main.txt").read_text()
    [(db, redis_db)] = [v.split() for v in seen.values()]
    assert db.startswith("dst_r") and int(redis_db) >= 2

    # a dead run's database (its pid is gone) is removed; a foreign database is not
    sql(project, "CREATE DATABASE dst_r999999999_dead_gw0")
    sql(project, "CREATE DATABASE someone_elses")
    # and one a killed run left invalid (a DROP interrupted midway): it cannot be altered
    sql(project, "CREATE DATABASE dst_r999999999_dead_gw1")
    invalid = "UPDATE pg_database SET datconnlimit = -2 WHERE datname = 'dst_r999999999_dead_gw1'"
    sql(project, invalid)

    # -n 2, twice at once: the running stack is reused, no two workers share a database
    shared = suite / "shared"
    shared.mkdir()
    procs = [pytest_cmd(suite, project, "-n", "2", seen=shared, barrier=2) for _ in range(2)]
    popens = [
        subprocess.Popen(c, cwd=suite, env=e, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for c, e, _ in procs
    ]
    outputs = [p.communicate(timeout=900)[0].decode() for p in popens]
    for popen, out in zip(popens, outputs, strict=True):
        assert popen.returncode == 0, out
        assert "reusing the running stack" in out
    seen_all = [p.read_text().split() for p in shared.iterdir()]
    assert len({db for db, _ in seen_all}) == len(seen_all) >= 2
    assert len({r for _, r in seen_all}) == len(seen_all)
    names = databases(project)
    assert not {"dst_r999999999_dead_gw0", "dst_r999999999_dead_gw1"} & names
    assert "someone_elses" in names
    assert not [n for n in names if n.startswith(("dst_r", "dst_b"))]  # runs drop their own
    assert len([n for n in names if n.startswith("dst_tpl_")]) == 1  # built once, reused

    # the worker databases of the next run were made ahead (2 workers); a run takes them
    spares = {n for n in names if n.startswith("dst_spare_")}
    assert len(spares) >= 2, names
    # a stack it did not start stays up at the end, even without --devstack-keep
    _, seen = run_pytest(suite, project)
    assert running(project)
    after = {n for n in databases(project) if n.startswith("dst_spare_")}
    assert len(spares - after) == 1 and after  # one taken (renamed), the other kept
    [(db, _)] = [v.split() for v in seen.values()]
    assert db.startswith("dst_r")

    # a drifted stack is refused with --devstack-no-recreate, saying what drifted
    project.write_env(AI_AGENTS_LOG_LEVEL="debug")
    command, env, _ = pytest_cmd(suite, project, "--devstack-no-recreate")
    result = subprocess.run(command, cwd=suite, env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert "differs from its declaration" in result.stderr + result.stdout

    # without it: recreated, saying what drifted; it was running before, so it stays up
    output, _ = run_pytest(suite, project)
    assert "the stack drifted, recreating" in output and "recreate" in output
    assert running(project)

    # stopped: the plugin starts it and, without --devstack-keep, takes it down at the end
    project.run("down")
    output, _ = run_pytest(suite, project)
    assert "starting the stack" in output
    assert not running(project)
    assert not (suite / "off-main.txt").exists(), (suite / "off-main.txt").read_text()


def test_failing_migration_stops_the_run_and_leaves_no_template(
    make_project: Callable[..., Project], tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(
        REPO_ROOT,
        repo,
        ignore=shutil.ignore_patterns(".git", ".venv", "__pycache__", ".env", "tests", "bench"),
    )
    (repo / "alembic/versions/0002_broken.py").write_text(BROKEN)
    project = make_project(project_dir=repo)
    project.run("up", "--quiet")  # the application's database migrates fine
    suite = write_suite(tmp_path, project, repo)
    for _ in range(2):  # the second run does not reuse anything half-made
        command, env, _ = pytest_cmd(suite, project)
        result = subprocess.run(command, cwd=suite, env=env, capture_output=True, text=True)
        output = result.stdout + result.stderr
        assert result.returncode != 0
        assert "migrations failed" in output and "boom-in-template-build" in output, output
        names = databases(project)
        assert not [n for n in names if n.startswith(("dst_tpl_", "dst_b"))]

    # an unforeseen error in the preparation stops the run once, with its text and traceback
    fixed = BROKEN.replace('raise RuntimeError("boom-in-template-build")', "pass")
    (repo / "alembic/versions/0002_broken.py").write_text(fixed)
    command, env, _ = pytest_cmd(suite, project)
    result = subprocess.run(
        command, cwd=suite, env={**env, "BREAK_CLAIM": "1"}, capture_output=True, text=True
    )
    output = result.stdout + result.stderr
    assert result.returncode == 4, output
    assert "preparing the test databases failed: RuntimeError: boom-in-claim" in output
    assert 'raise RuntimeError("boom-in-claim")' in output and "ERROR at setup" not in output


def test_db_snapshot_restore_list_drop(make_project: Callable[..., Project]) -> None:
    project = make_project()
    project.run("up", "--quiet")
    sql(project, "CREATE TABLE notes (body text); INSERT INTO notes VALUES ('before')")

    # the API's pool holds connections: the stack's own, closed for the copy (no --force)
    made = project.run("db", "snapshot", "s1")
    assert "of the stack's own services" in made.stdout
    sql(project, "UPDATE notes SET body = 'after'")

    listed = project.run("db", "list").stdout
    assert "s1" in listed and "of testdb" in listed

    project.run("down")  # snapshots live in the volume: they survive `down`
    project.run("up", "--quiet")
    project.run("db", "restore", "s1")
    assert sql(project, "SELECT body FROM notes") == "before"

    missing = project.run("db", "restore", "nope", check=False)
    assert missing.returncode == 1 and "no snapshot 'nope'" in missing.stderr
    invalid = project.run("db", "snapshot", "bad-name;drop", check=False)
    assert invalid.returncode == 2 and "invalid snapshot name" in invalid.stderr

    project.run("db", "drop", "s1")
    assert "s1" not in project.run("db", "list").stdout
    project.run("db", "reset")
    assert sql(project, "SELECT to_regclass('notes') IS NULL")
    assert sql(project, "SELECT to_regclass('task_records') IS NOT NULL")


RESTART_SUITE = """
import asyncio, os, asyncpg, docker

def test_1_restart_postgres(devstack_fresh_dsn):
    docker.from_env().containers.get(os.environ["PG_CONTAINER"]).restart(timeout=5)

def test_2_a_fresh_clone_after_the_restart(devstack_fresh_dsn):
    async def check():
        conn = await asyncpg.connect(devstack_fresh_dsn)
        try:
            return await conn.fetchval("SELECT to_regclass('task_records') IS NOT NULL")
        finally:
            await conn.close()
    assert asyncio.run(check())
"""


def test_postgres_restarted_during_a_run(
    make_project: Callable[..., Project], tmp_path: Path
) -> None:
    project = make_project()
    project.run("up", "--quiet")
    suite = write_suite(tmp_path, project)
    (suite / "test_db.py").write_text(RESTART_SUITE)
    command, env, _ = pytest_cmd(suite, project)
    env["PG_CONTAINER"] = f"{project.name}-postgres"
    result = subprocess.run(command, cwd=suite, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not [n for n in databases(project) if n.startswith("dst_r")]


PREFIX_SUITE = """
def test_prefix_when_every_redis_database_is_taken(devstack_redis, devstack_redis_prefix):
    assert devstack_redis_prefix.startswith("dst:")
    assert devstack_redis.connection_pool.connection_kwargs["db"] == 0
    devstack_redis.set(devstack_redis_prefix + "k", "v")
"""


def test_redis_falls_back_to_a_key_prefix(
    make_project: Callable[..., Project], tmp_path: Path
) -> None:
    import redis

    project = make_project()
    project.run("up", "--quiet")
    client = redis.Redis(port=project.redis_port)
    # every database the stack's services do not declare they use (0-2): 3..15
    claims = [f"devstack:pytest:redis-db:{n}" for n in range(3, 16)]
    for key in claims:  # held by a live run (this process)
        client.set(key, f"{os.getpid()}_beef_gw9")
    suite = write_suite(tmp_path, project)
    (suite / "test_db.py").write_text(PREFIX_SUITE)
    run_pytest(suite, project)
    assert not list(client.scan_iter(match="dst:*"))  # its keys were removed at the end
    assert all(client.get(k) == f"{os.getpid()}_beef_gw9".encode() for k in claims)
    client.close()


def test_two_runs_at_once_on_a_drifted_stack_recreate_it_once(
    make_project: Callable[..., Project], tmp_path: Path
) -> None:
    project = make_project()
    project.run("up", "--quiet")
    project.write_env(AI_AGENTS_LOG_LEVEL="debug")  # the running stack drifted
    suite = write_suite(tmp_path, project)
    commands = [pytest_cmd(suite, project) for _ in range(2)]
    popens = [
        subprocess.Popen(c, cwd=suite, env=e, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for c, e, _ in commands
    ]
    outputs = [p.communicate(timeout=900)[0].decode() for p in popens]
    for popen, out in zip(popens, outputs, strict=True):
        assert popen.returncode == 0, out
    # one run recreated it; the other waited for it and found it matching
    assert sum("the stack drifted, recreating" in out for out in outputs) == 1, outputs
    assert sum("reusing the running stack" in out for out in outputs) == 1, outputs
    assert running(project)


def test_per_test_clones_are_file_copies_not_written_through_the_wal(
    make_project: Callable[..., Project],
) -> None:
    """A `CREATE DATABASE … STRATEGY WAL_LOG` (the default) writes the whole template through
    the WAL, and every later drop's checkpoint writes it again: per-test clones are copied as
    files (fresh all the same: each test sees the template's tables and nothing of another)."""
    project = make_project()
    project.run("up", "--quiet")
    settings = load_settings(project.project_dir, project.env_file, environ={})
    template = dbs.ensure_template(settings)
    size = sql(project, f"SELECT pg_database_size('{template}')")
    wal_before = sql(project, "SELECT wal_bytes::bigint FROM pg_stat_wal")
    assert isinstance(size, int) and isinstance(wal_before, int)
    pool = ClonePool(dbs.Server.of(settings), template, f"dst_r{os.getpid()}_files")
    try:
        names = []
        for _ in range(3):
            name = pool.take()
            dsn = dbs.Server.of(settings).dsn(name)
            assert asyncio.run(_fresh_row_count(dsn)) == 1  # the template's row, nothing more
            names.append(name)
            pool.release(name)
    finally:
        pool.close()
    assert len(set(names)) == 3
    wal = sql(project, "SELECT wal_bytes::bigint FROM pg_stat_wal")
    assert isinstance(wal, int)
    # 3 + AHEAD clones were made: through the WAL that would be at least that many templates
    assert wal - wal_before < size, (wal - wal_before, size, AHEAD)
    assert not [n for n in databases(project) if n.startswith("dst_r")]


async def _fresh_row_count(dsn: str) -> int:
    """Rows of alembic_version after writing one more: 1 + 1 on a fresh clone."""
    conn = await asyncpg.connect(dsn)
    try:
        count = int(await conn.fetchval("SELECT count(*) FROM alembic_version"))
        await conn.execute("INSERT INTO alembic_version VALUES ('dirty')")
        return count
    finally:
        await conn.close()
