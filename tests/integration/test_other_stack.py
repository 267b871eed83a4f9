"""devstack runs any declared stack: examples/minimal (Postgres and a web app, nothing built,
no Redis, no worker, no migrations) comes up, shows in `status`, exports to Kubernetes and
runs the pytest plugin (issue 19's proof)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import docker
import httpx
import kubernetes_validate
import yaml

from tests.integration.conftest import (
    OWN_PREFIXES,
    REPO_ROOT,
    TEST_PREFIX,
    Project,
    free_port,
    inherited_settings,
)

SUITE = """
import asyncio

import asyncpg


def test_the_database_is_this_workers(devstack_dsn):
    async def check():
        conn = await asyncpg.connect(devstack_dsn)
        try:
            await conn.execute("CREATE TABLE t (x int)")
            return await conn.fetchval("SELECT current_database()")
        finally:
            await conn.close()

    assert asyncio.run(check()).startswith("dst_r")
"""


def minimal_project(tmp_path: Path, client: docker.DockerClient) -> Project:
    project_dir = tmp_path / "minimal"
    shutil.copytree(REPO_ROOT / "examples" / "minimal", project_dir)
    name = f"{TEST_PREFIX}{os.getpid()}-{secrets.token_hex(3)}"
    project = Project(name, tmp_path / ".env", project_dir, client)
    inherited = inherited_settings()
    project.write_env(
        DEVSTACK_PROJECT=name,
        MINI_DB_PORT=str(free_port()),
        MINI_WEB_PORT=str(free_port()),
        MINI_DB_PASSWORD=f"pw-{secrets.token_hex(6)}",
        # the images it declares (the stand-ins on a host without a registry)
        **{k: v for k, v in inherited.items() if k.endswith(("POSTGRES_IMAGE", "PYTHON_IMAGE"))},
    )
    return project


def test_a_stack_of_postgres_and_a_web_app(
    tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    project = minimal_project(tmp_path, docker_client)
    try:
        project.run("up", "--quiet", "--timeout", "240")
        web = f"http://127.0.0.1:{project.values['MINI_WEB_PORT']}"
        assert httpx.get(f"{web}/ready", timeout=5).text == "ok"

        data = json.loads(project.run("status", "--json").stdout)
        assert {s["service"]: s["state"] for s in data["services"]} == {
            "db": "running",
            "web": "running",
        }
        assert project.values["MINI_DB_PASSWORD"] not in json.dumps(data)

        out = tmp_path / "k8s"
        project.run("export", "k8s", "--out", str(out))  # nothing built: no image to name
        manifests = sorted(p.name for p in out.glob("*.yaml"))
        assert {"db.yaml", "web.yaml", "kustomization.yaml"} <= set(manifests)
        for path in out.glob("*.yaml"):
            for document in yaml.safe_load_all(path.read_text()):
                if document and document.get("kind") != "Kustomization":
                    kubernetes_validate.validate(document, "1.33.0", strict=True)
        secret = (out / "secret.yaml").read_text()
        assert project.values["MINI_DB_PASSWORD"] not in secret  # placeholders only
        assert "MINI_DB_PASSWORD" in secret

        suite = tmp_path / "suite"
        suite.mkdir()
        (suite / "test_db.py").write_text(textwrap.dedent(SUITE))
        (suite / "pytest.ini").write_text(
            f"[pytest]\ndevstack = true\ndevstack_project_dir = {project.project_dir}\n"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(OWN_PREFIXES)}
        env.update(PYTHONPATH=str(REPO_ROOT), PYTEST_ADDOPTS="", NO_COLOR="1")
        env.pop("PYTEST_XDIST_WORKER", None)
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-p",  # the plugin loads through its entry point; the ini enables it
                "no:cacheprovider",
                "-q",
                "-c",
                str(suite / "pytest.ini"),
                "--rootdir",
                str(suite),
                "--devstack-env-file",
                str(project.env_file),
            ],
            cwd=suite,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "1 passed" in result.stdout

        # `db reset` with no migrations job: an empty database (was: exit 2, "needs one")
        assert "reset: done (mini)" in project.run("db", "reset").stdout
    finally:
        project.remove_everything()
