"""devstack runs any declared stack: examples/minimal (Postgres and a web app, nothing built,
no Redis, no worker, no migrations) comes up, shows in `status`, exports to Kubernetes and
runs the pytest plugin (issue 19's proof); so does examples/asgi-app, whose web app is built
from its own Dockerfile and runs under the ASGI recipe (dev mode: devserver, sources mounted)."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import asyncpg
import docker
import httpx
import kubernetes_validate
import pytest
import yaml

from devstack.usecases.databases import EMPTY_TEMPLATE
from tests.integration.conftest import (
    OWN_PREFIXES,
    REPO_ROOT,
    Project,
    free_port,
    inherited_settings,
    poll,
    stack_project,
)

K8S_VERSIONS = ("1.33.0", "1.37.0")  # as tests/unit/test_k8s.py
WEB_IMAGE = "registry.example.com/x/web:1"

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
    inherited = inherited_settings()
    return stack_project(
        project_dir,
        client,
        MINI_DB_PORT=str(free_port()),
        MINI_WEB_PORT=str(free_port()),
        MINI_DB_PASSWORD=f"pw-{secrets.token_hex(6)}",
        # the images it declares (the stand-ins on a host without a registry)
        **{k: v for k, v in inherited.items() if k.endswith(("POSTGRES_IMAGE", "PYTHON_IMAGE"))},
    )


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
        # web declares no Docker health check: its own readiness check (GET /ready) says
        health = {s["service"]: s["health"] for s in data["services"]}
        assert health["web"] == "ready", health
        assert "ready: devstack's own readiness check" in project.run("status").stdout

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

        # its database gone, the web app answers /ready with 503: `status` says so
        docker_client.containers.get(f"{project.name}-db").stop()
        data = json.loads(project.run("status", "--json").stdout)
        assert {s["service"]: s["health"] for s in data["services"]}["web"] == "not ready"
    finally:
        project.remove_everything()


# --- examples/asgi-app: a web app built from the project's Dockerfile ----------------------------
def asgi_app_project(tmp_path: Path, client: docker.DockerClient) -> Project:
    """A copy of examples/asgi-app as an isolated project (own name, free ports, the machine's
    base images and CA bundle; no Redis image: the stack declares no Redis)."""
    project_dir = tmp_path / "asgi-app"
    shutil.copytree(
        REPO_ROOT / "examples" / "asgi-app",
        project_dir,
        ignore=shutil.ignore_patterns("__pycache__", ".devstack-cache"),
    )
    # the images it declares and the CA bundle (no Redis, no monitoring group)
    declared = ("DEVSTACK_POSTGRES_IMAGE", "DEVSTACK_PYTHON_IMAGE", "DEVSTACK_CA_BUNDLE")
    inherited = {k: v for k, v in inherited_settings().items() if k in declared}
    return stack_project(
        project_dir,
        client,
        DEVSTACK_POSTGRES_PORT=str(free_port()),
        DEVSTACK_WEB_PORT=str(free_port()),
        POSTGRES_PASSWORD=f"pw-{secrets.token_hex(6)}",
        DEVSTACK_HEALTH_INTERVAL="1",
        **inherited,
    )


def database_names(project: Project) -> list[str]:
    dsn = (
        f"postgresql://postgres:{project.values['POSTGRES_PASSWORD']}@127.0.0.1:"
        f"{project.values['DEVSTACK_POSTGRES_PORT']}/postgres"
    )

    async def names() -> list[str]:
        conn = await asyncpg.connect(dsn)
        try:
            return [r["datname"] for r in await conn.fetch("SELECT datname FROM pg_database")]
        finally:
            await conn.close()

    return asyncio.run(names())


def run_own_tests(project: Project) -> subprocess.CompletedProcess[str]:
    """pytest with the devstack plugin on the example's own tests (its pytest.ini)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(OWN_PREFIXES)}
    env.pop("PYTEST_XDIST_WORKER", None)
    env.update(PYTHONPATH=str(REPO_ROOT), NO_COLOR="1", PYTEST_ADDOPTS="")
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"]
    command += ["-c", str(project.project_dir / "pytest.ini")]
    command += ["--rootdir", str(project.project_dir)]
    # `--opt=PATH`: a separate existing path would count as a place to find the rootdir
    command += [f"--devstack-env-file={project.env_file}"]
    return subprocess.run(
        command, cwd=project.project_dir, env=env, capture_output=True, text=True, timeout=600
    )


def test_a_built_asgi_app_and_postgres(tmp_path: Path, docker_client: docker.DockerClient) -> None:
    project = asgi_app_project(tmp_path, docker_client)
    try:
        # up: the image built from the example's Dockerfile; two containers, nothing else
        up = project.run("up", "--quiet", "--timeout", "240")
        assert "healthy in" in up.stdout + up.stderr
        assert sorted(project.resources()["containers"]) == [
            f"{project.name}-postgres",
            f"{project.name}-web",
        ]
        web = f"http://127.0.0.1:{project.values['DEVSTACK_WEB_PORT']}"
        assert httpx.get(f"{web}/ready", timeout=5).text == "ready\n"  # it queried Postgres

        # status: exactly the two services, running and ready, as declared
        report = json.loads(project.run("status", "--json").stdout)
        assert [row["service"] for row in report["services"]] == ["postgres", "web"]
        for row in report["services"]:
            assert row["state"] == "running" and row["drift"] == "", row
            assert row["health"] in {"healthy", "ready (probed)"}, row
        tag = report["services"][1]["image"]
        assert tag.startswith("devstack-asgi-app/web:")

        def docker_says_healthy() -> bool:  # Docker's own check (curl /ready) passes too
            rows = json.loads(project.run("status", "--json").stdout)["services"]
            return all(row["health"] == "healthy" for row in rows)

        poll(docker_says_healthy, timeout=30)

        # dev mode: web/ is mounted and a save is served by devserver's fresh server
        main = project.project_dir / "web" / "main.py"
        original = main.read_text()
        main.write_text(original.replace("hello from", "edited: hello from"))
        poll(lambda: httpx.get(web, timeout=5).text.startswith("edited: "), timeout=30)
        main.write_text(original)  # back to what the image was built from (no drift below)
        poll(lambda: httpx.get(web, timeout=5).text.startswith("hello from"), timeout=30)

        # export k8s: the built image as the cluster pulls it; every object passes strict checks
        out = tmp_path / "k8s"
        project.run("export", "k8s", "--image", f"web={WEB_IMAGE}", "--out", str(out))
        objects = [
            (path.name, document)
            for path in sorted(out.glob("*.yaml"))
            if path.name != "kustomization.yaml"
            for document in yaml.safe_load_all(path.read_text())
            if document
        ]
        for version in K8S_VERSIONS:
            for name, document in objects:
                try:
                    kubernetes_validate.validate(document, version, strict=True)
                except kubernetes_validate.ValidationError as exc:
                    pytest.fail(f"{name}: {document['kind']} {exc.message} at {list(exc.path)}")
        kinds = {"Deployment", "StatefulSet", "Job"}
        workloads = {(d["kind"], d["metadata"]["name"]) for _, d in objects if d["kind"] in kinds}
        assert workloads == {("StatefulSet", "postgres"), ("Deployment", "web")}
        (deployment,) = [d for _, d in objects if d["kind"] == "Deployment"]
        containers = deployment["spec"]["template"]["spec"]["containers"]
        assert [c["image"] for c in containers] == [WEB_IMAGE]
        assert "devserver" not in json.dumps(containers)  # the production command

        # its own tests through the plugin: the running stack reused, an empty template
        result = run_own_tests(project)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "3 passed" in result.stdout, result.stdout
        assert f"reusing the running stack {project.name}" in result.stdout, result.stdout
        names = database_names(project)
        assert EMPTY_TEMPLATE in names
        assert not [n for n in names if n.startswith(("dst_r", "dst_b"))], names

        # down --volumes, then the image tag it built: nothing of the project is left
        project.run("down", "--volumes", "--quiet")
        assert project.resources() == {"containers": [], "networks": [], "volumes": []}
        project.remove_everything()
        with pytest.raises(docker.errors.ImageNotFound):
            docker_client.images.get(tag)
    finally:
        project.remove_everything()
