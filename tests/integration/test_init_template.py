"""Init templates on a real engine and a real Postgres (issue 23's "beating initdb"): a new data
volume starts as a copy of the first initialisation, indistinguishable from a fresh initdb
(roles, databases, encoding, locale, pg_hba, settings, init scripts run once), keyed by the
password and the init scripts, and a copy cut off halfway is started over. The project is a
one-service stack of its own (Postgres with a directory of init scripts), with a cache of its
own for its templates."""

from __future__ import annotations

import asyncio
import io
import os
import secrets
import signal
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import docker
import pytest

from devstack.converge.templates import SEEDING, templates_dir
from tests.integration.conftest import (
    TEST_PREFIX,
    Project,
    free_port,
    inherited_settings,
    poll,
)

STACK = """
from dataclasses import replace

from devstack import recipes as r


def stack(env):
    db = r.postgres(
        env,
        "tpldb",
        image=env.image("DEVSTACK_POSTGRES_IMAGE", "postgres:17-alpine"),
        port_key="TPL_DB_PORT",
        port_default=15439,
        user="tpl",
        password=env.secret("TPL_DB_PASSWORD", r.EXAMPLE_PASSWORD),
        database="tpl",
    )
    scripts = r.bind(env, "initdb.d", "/docker-entrypoint-initdb.d")
    return r.stack(env, replace(db, mounts=(*db.mounts, scripts)))
"""
INIT_SQL = "CREATE TABLE init_runs (at timestamptz DEFAULT now(), what text);\n"
INIT_SH = """\
#!/bin/sh
psql -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" \\
    -c "INSERT INTO init_runs (what) VALUES ('sh')"
"""
MADE = "kept as its init template"

FACTS = {
    "roles": "SELECT rolname, rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, "
    "rolreplication, rolbypassrls, rolconnlimit FROM pg_roles ORDER BY 1",
    "databases": "SELECT datname, pg_encoding_to_char(encoding), datcollate, datctype, "
    "datlocprovider, datistemplate, datallowconn, pg_get_userbyid(datdba) FROM pg_database "
    "ORDER BY 1",
    "hba": "SELECT type, database, user_name, address, netmask, auth_method FROM "
    "pg_hba_file_rules ORDER BY rule_number",
    "settings": "SELECT name, setting FROM pg_settings WHERE source = 'configuration file' "
    "ORDER BY 1",
    "tables": "SELECT schemaname, tablename, tableowner FROM pg_tables "
    "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2",
    "init runs": "SELECT what, count(*) FROM init_runs GROUP BY what ORDER BY 1",
}


@pytest.fixture
def tpl(
    tmp_path: Path, docker_client: docker.DockerClient, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Project]:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # templates of its own
    project_dir = tmp_path / "tpl"
    (project_dir / "initdb.d").mkdir(parents=True)
    (project_dir / "stack.py").write_text(STACK)
    (project_dir / "initdb.d" / "01-table.sql").write_text(INIT_SQL)
    (project_dir / "initdb.d" / "02-row.sh").write_text(INIT_SH)
    os.chmod(project_dir / "initdb.d" / "02-row.sh", 0o755)
    name = f"{TEST_PREFIX}{os.getpid()}-{secrets.token_hex(3)}"
    project = Project(name, tmp_path / "tpl.env", project_dir, docker_client)
    image = inherited_settings().get("DEVSTACK_POSTGRES_IMAGE")
    project.write_env(
        DEVSTACK_PROJECT=name,
        TPL_DB_PORT=str(free_port()),
        TPL_DB_PASSWORD=f"pw-{secrets.token_hex(6)}",
        **({"DEVSTACK_POSTGRES_IMAGE": image} if image else {}),
    )
    try:
        yield project
    finally:
        project.remove_everything()


def dsn(project: Project, password: str | None = None, port: int | None = None) -> str:
    pw = password if password is not None else project.values["TPL_DB_PASSWORD"]
    return f"postgresql://tpl:{pw}@127.0.0.1:{port or project.values['TPL_DB_PORT']}/tpl"


def facts(url: str) -> dict[str, list[tuple[Any, ...]]]:
    async def read() -> dict[str, list[tuple[Any, ...]]]:
        conn = await asyncpg.connect(url)
        try:
            return {k: [tuple(r) for r in await conn.fetch(q)] for k, q in FACTS.items()}
        finally:
            await conn.close()

    return asyncio.run(read())


def execute(url: str, sql: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


def refused(url: str) -> bool:
    try:
        facts(url)
    except asyncpg.InvalidPasswordError:
        return True
    return False


def fresh_initdb_facts(project: Project, client: docker.DockerClient) -> dict[str, Any]:
    """The same image, settings and init scripts initialised the image's own way, in a
    container of the test's own (labelled with its project, so a killed run's is removed)."""
    from devstack.declare.settings import load_settings
    from devstack.declare.stackfile import declare

    settings = load_settings(project.project_dir, project.env_file, environ={})
    service = declare(settings).service("tpldb")
    port = free_port()
    container = client.containers.run(
        service.image,
        detach=True,
        environment=dict(service.environment),
        ports={"5432/tcp": ("127.0.0.1", port)},
        volumes={str(project.project_dir / "initdb.d"): {"bind": "/docker-entrypoint-initdb.d"}},
        labels={"devstack.project": project.name},
        name=f"{project.name}-reference",
    )
    try:
        return poll(lambda: facts(dsn(project, port=port)), timeout=60)  # type: ignore[no-any-return]
    finally:
        container.remove(force=True, v=True)


def template_files(project: Project) -> list[Path]:
    return sorted(templates_dir().glob("tpldb-*.tar"))


def no_maker_left(project: Project) -> bool:
    names = [c.name for c in project.client.containers.list(all=True)]
    return not [n for n in names if n.startswith(project.name) and "init-template" in n]


def test_a_new_volume_is_a_copy_of_the_first_initialisation_indistinguishable_from_initdb(
    tpl: Project, docker_client: docker.DockerClient
) -> None:
    first = tpl.run("up", "--timeout", "240")
    assert MADE in first.stdout + first.stderr
    assert no_maker_left(tpl)
    (template,) = template_files(tpl)
    assert oct(template.stat().st_mode & 0o777) == "0o600"
    reference = fresh_initdb_facts(tpl, docker_client)
    seeded = facts(dsn(tpl))
    assert seeded == reference
    assert seeded["init runs"] == [("sh", 1)]  # the init scripts ran once, not once per copy
    assert refused(dsn(tpl, password="wrong"))

    # the developer's data goes with the volume; the next volume is a copy again
    execute(dsn(tpl), "CREATE TABLE mine (x int); INSERT INTO init_runs (what) VALUES ('me')")
    tpl.run("down", "--volumes")
    again = tpl.run("up", "--timeout", "240")
    assert MADE not in again.stdout + again.stderr
    assert "copying its init template" in again.stdout + again.stderr
    assert facts(dsn(tpl)) == reference
    assert template_files(tpl) == [template]


def test_another_password_or_init_script_makes_another_template(tpl: Project) -> None:
    tpl.run("up", "--timeout", "240")
    old_password = tpl.values["TPL_DB_PASSWORD"]
    tpl.run("down", "--volumes")
    tpl.write_env(TPL_DB_PASSWORD=f"pw-{secrets.token_hex(6)}")
    result = tpl.run("up", "--timeout", "240")
    assert MADE in result.stdout + result.stderr
    assert len(template_files(tpl)) == 2  # never shared across passwords
    assert refused(dsn(tpl, password=old_password))
    assert facts(dsn(tpl))["init runs"] == [("sh", 1)]

    tpl.run("down", "--volumes")
    script = tpl.project_dir / "initdb.d" / "03-more.sql"
    script.write_text("INSERT INTO init_runs (what) VALUES ('sql');\n")
    result = tpl.run("up", "--timeout", "240")
    assert MADE in result.stdout + result.stderr
    assert facts(dsn(tpl))["init runs"] == [("sh", 1), ("sql", 1)]


def test_an_up_cut_off_while_copying_starts_the_volume_over(
    tpl: Project, docker_client: docker.DockerClient
) -> None:
    tpl.run("up", "--timeout", "240")
    tpl.run("down", "--volumes")
    # what a kill halfway through the copy leaves: the volume and a created container with
    # the cluster's top files (PG_VERSION...) but not its databases, and the marker
    (template,) = template_files(tpl)
    partial = io.BytesIO()
    with tarfile.open(template) as whole, tarfile.open(fileobj=partial, mode="w") as part:
        for member in whole:
            if "/base/" not in member.name:
                part.addfile(member, whole.extractfile(member) if member.isfile() else None)
    volume = f"{tpl.name}_pgdata"
    docker_client.volumes.create(volume, labels={"devstack.project": tpl.name})
    from devstack.declare.settings import load_settings
    from devstack.declare.stackfile import declare
    from devstack.engine.docker import DockerEngine

    stack = declare(load_settings(tpl.project_dir, tpl.env_file, environ={})).active()
    engine = DockerEngine.connect()
    container = engine.create_container(stack, stack.service("tpldb"))
    engine.extract(container, "/var/lib/postgresql", io.BytesIO(partial.getvalue()))
    marker = templates_dir() / f"{SEEDING}{volume}"
    marker.write_text(f"{tpl.name}-tpldb")

    result = tpl.run("up", "--timeout", "120")
    assert "an earlier up was cut off filling it" in result.stdout + result.stderr
    assert not marker.exists()
    assert facts(dsn(tpl))["init runs"] == [("sh", 1)]


def test_a_failing_first_start_fails_up_in_one_line_and_keeps_nothing(tpl: Project) -> None:
    failing = tpl.project_dir / "initdb.d" / "00-fail.sh"
    failing.write_text("#!/bin/sh\necho 'the init script says no' >&2\nexit 3\n")
    failing.chmod(0o755)
    result = tpl.run("up", "--timeout", "120", check=False)
    assert result.returncode == 1
    first_line = result.stderr.strip().splitlines()[0]
    assert "its first start (for its init template) exited with code" in first_line
    assert "the init script says no" in result.stderr  # its log, below
    assert "Traceback" not in result.stderr
    assert template_files(tpl) == [] and no_maker_left(tpl)

    failing.unlink()
    tpl.run("up", "--timeout", "240")
    assert facts(dsn(tpl))["init runs"] == [("sh", 1)]


def test_ctrl_c_during_the_first_start_leaves_nothing_down_or_up_cannot_handle(
    tpl: Project,
) -> None:
    slow = tpl.project_dir / "initdb.d" / "00-slow.sh"
    slow.write_text("#!/bin/sh\nsleep 60\n")
    slow.chmod(0o755)
    command, env = tpl.command("up", "--timeout", "240")
    up = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    maker = f"{tpl.name}-tpldb-init-template"

    def maker_runs() -> bool:
        return bool(tpl.client.containers.list(filters={"name": maker, "status": "running"}))

    try:
        poll(maker_runs, timeout=120)
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=60) == 130
    finally:
        up.kill()
        up.wait()
    # `down --volumes` removes what the cut-off first start left (its volume was in use by it)
    tpl.run("down", "--volumes")
    assert tpl.resources() == {"containers": [], "networks": [], "volumes": []}
    # and `up` starts over: the half-initialised first start is not taken for a whole one
    slow.unlink()
    tpl.run("up", "--timeout", "240")
    assert facts(dsn(tpl))["init runs"] == [("sh", 1)]
