"""Bad input, faults and interrupts: one clear message, the documented exit code, nothing
half-made that breaks the next run, no data lost (real engine)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import docker
import pytest

from .conftest import REPO_ROOT, Project, poll

NOTHING = {"containers": [], "networks": [], "volumes": []}


def copy_repo(target: Path) -> Path:
    """The files the API image is built from, in a scratch directory we may break."""
    target.mkdir(parents=True)
    for name in ("Dockerfile", ".dockerignore", "pyproject.toml", "stack.py"):
        shutil.copy2(REPO_ROOT / name, target / name)
    for name in ("certs", "service", "alembic", "image-build", "monitoring"):
        shutil.copytree(
            REPO_ROOT / name,
            target / name,
            ignore=shutil.ignore_patterns("*.pyc", "__pycache__", "*.pem"),
        )
    return target


def assert_clear_failure(result: subprocess.CompletedProcess[str], code: int, *parts: str) -> str:
    output = result.stdout + result.stderr
    assert result.returncode == code, output
    # no traceback of devstack's own (the service's log excerpt may quote the app's)
    assert "Traceback" not in output.partition("log lines:")[0], output
    for part in parts:
        assert part in output, output
    return output


# --- bad input: exit 2, nothing created --------------------------------------------------
@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"DEVSTACK_API_PORT": "eighty"}, "DEVSTACK_API_PORT in"),
        ({"DEVSTACK_REDIS_PORT": "70000"}, "DEVSTACK_REDIS_PORT in"),
        ({"DEVSTACK_POSTGRES_PORT": "$API"}, "both use host port"),
        ({"POSTGRES_PASSWORD": ""}, "POSTGRES_PASSWORD in"),
        ({"DEVSTACK_PROJECT": "Bad/Name"}, "not a valid project name"),
        ({"DEVSTACK_POSTGRS_PORT": "5999"}, "did you mean DEVSTACK_POSTGRES_PORT?"),
        ({"DEVSTACK_BIND_ADDRESS": "my-laptop"}, "not an IP address"),
        ({"DEVSTACK_TIMEOUT": "0"}, "DEVSTACK_TIMEOUT in"),
        (
            {"DEVSTACK_BIND_ADDRESS": "0.0.0.0", "POSTGRES_PASSWORD": "devstack-example-password"},
            "example POSTGRES_PASSWORD",
        ),
    ],
)
def test_bad_setting_exits_2_and_creates_nothing(
    project: Project, changes: dict[str, str], expected: str
) -> None:
    if changes.get("DEVSTACK_POSTGRES_PORT") == "$API":
        changes = {"DEVSTACK_POSTGRES_PORT": project.values["DEVSTACK_API_PORT"]}
    project.write_env(**changes)
    result = project.run("up", check=False)
    assert_clear_failure(result, 2, expected, str(project.env_file))
    assert project.resources() == NOTHING


def test_malformed_env_line_names_file_and_line(project: Project) -> None:
    with project.env_file.open("a") as handle:
        handle.write("this line is not a setting\n")
    result = project.run("up", check=False)
    assert_clear_failure(result, 2, f"{project.env_file} line", "expected KEY=VALUE")
    assert project.resources() == NOTHING


@pytest.mark.parametrize(
    "args", [("launch",), ("up", "--colour"), ("up", "--timeout", "0"), ("up", "--timeout", "x")]
)
def test_usage_errors_exit_2(project: Project, args: tuple[str, ...]) -> None:
    result = project.run(*args, check=False)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "usage:" in result.stderr
    assert project.resources() == NOTHING


def test_missing_default_env_file_uses_documented_defaults(tmp_path: Path) -> None:
    """Only the default PROJECT_DIR/.env may be absent (an --env-file must exist: see
    test_reliability.py::test_cli_env_file_named_but_missing_exits_2)."""
    repo = copy_repo(tmp_path / "repo")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEVSTACK_", "POSTGRES_"))}
    result = subprocess.run(
        [sys.executable, "-m", "devstack", "--project-dir", str(repo), "up", "--plan"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "using the documented defaults" in result.stdout


# --- faults: exit 1, clear message, the next `up` recovers -------------------------------
def test_daemon_unreachable(project: Project) -> None:
    result = project.run("up", check=False, env_extra={"DOCKER_HOST": "unix:///tmp/no-docker.sock"})
    assert_clear_failure(result, 1, "cannot reach the Docker engine", "systemctl start docker")


def test_port_taken_by_a_process(project: Project) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", project.postgres_port))
        holder.listen()
        result = project.run("up", check=False)
    assert_clear_failure(
        result,
        1,
        f"host port {project.postgres_port} (DEVSTACK_POSTGRES_PORT)",
        "another process",
        "set DEVSTACK_POSTGRES_PORT in .env",
    )
    assert project.resources() == NOTHING
    project.run("up", "--quiet")  # the cause is gone: up converges


def test_an_image_that_cannot_be_had_names_the_setting_that_chose_it(project: Project) -> None:
    """A typo in an image setting (or no registry): the one line says which `.env` key chose
    the image, not a script of devstack's own repository."""
    image = project.values.get("DEVSTACK_REDIS_IMAGE", "redis:7-alpine")
    project.write_env(DEVSTACK_REDIS_IMAGE="127.0.0.1:9/devstack-test/no-such-redis:7")
    result = project.run("up", check=False)
    output = assert_clear_failure(
        result,
        1,
        "image 127.0.0.1:9/devstack-test/no-such-redis:7 is not on this machine and cannot be "
        "pulled",
        "set DEVSTACK_REDIS_IMAGE in .env to an image this machine has",
    )
    assert "scripts/" not in output
    project.write_env(DEVSTACK_REDIS_IMAGE=image)
    project.run("up", "--quiet")  # the setting is fixed: up converges


def test_port_taken_by_another_projects_container(
    project: Project, docker_client: docker.DockerClient
) -> None:
    port = int(project.values["DEVSTACK_API_PORT"])
    other = docker_client.containers.run(
        project.values["DEVSTACK_REDIS_IMAGE"],
        detach=True,
        name=f"{project.name}-other",
        labels={"devstack.project": f"{project.name}-other"},
        ports={"6379/tcp": ("127.0.0.1", port)},
    )
    try:
        result = project.run("up", check=False)
        assert_clear_failure(
            result,
            1,
            f"host port {port} (DEVSTACK_API_PORT)",
            f"container {project.name}-other of devstack project {project.name}-other",
        )
        assert project.resources() == NOTHING
    finally:
        other.remove(force=True, v=True)


def assert_only_databases_left(project: Project) -> None:
    """A failed build leaves only what started while the image built (Postgres and Redis
    need no built image); no container of the image exists."""
    left = sorted(project.resources()["containers"])
    assert left == [f"{project.name}-postgres", f"{project.name}-redis"]


def test_build_failure_names_the_step(tmp_path: Path, make_project: Callable[..., Project]) -> None:
    repo = copy_repo(tmp_path / "repo")
    dockerfile = repo / "Dockerfile"
    dockerfile.write_text(
        dockerfile.read_text().replace(
            "WORKDIR /app", "RUN echo 'about to fail' && exit 3\nWORKDIR /app"
        )
    )
    project = make_project(project_dir=repo)
    result = project.run("up", check=False)
    assert_clear_failure(result, 1, "failed to build at step", "exit 3", "about to fail")
    assert_only_databases_left(project)


def test_uninstallable_dependency_names_it(
    tmp_path: Path, make_project: Callable[..., Project]
) -> None:
    repo = copy_repo(tmp_path / "repo")
    pyproject = repo / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace(
            "service = [\n", 'service = [\n    "devstack-no-such-package==0.0.1",\n'
        )
    )
    project = make_project(project_dir=repo)
    result = project.run("up", check=False)
    assert_clear_failure(result, 1, "failed to build", "devstack-no-such-package")
    assert_only_databases_left(project)


def test_api_crash_at_start_fails_fast_with_logs(
    tmp_path: Path, make_project: Callable[..., Project]
) -> None:
    repo = copy_repo(tmp_path / "repo")
    main = repo / "service" / "main.py"
    main.write_text(main.read_text() + "\nimport service.no_such_module  # broken on purpose\n")
    project = make_project(project_dir=repo)
    project.run("up", "postgres", "redis", "--quiet")  # so the timing below is the API's alone
    started = time.monotonic()
    result = project.run("up", "--timeout", "120", check=False)
    elapsed = time.monotonic() - started
    assert_clear_failure(result, 1, "api", "no_such_module")
    assert elapsed < 15, f"took {elapsed:.1f}s: should fail fast, not at the timeout"


def test_health_never_passing_reports_at_timeout(project: Project) -> None:
    # the cache on a host that does not exist: the API's /health answers 503 for ever
    # (a wrong database password would stop the migrations job first, at once)
    project.run("up", "--quiet")  # so the deadline below is the API's alone
    project.write_env(AI_AGENTS_REDIS_URL="redis://no-such-redis-host:6379/0")
    result = project.run("up", "--timeout", "8", check=False)
    output = assert_clear_failure(
        result, 1, "api was not ready before the deadline", "HTTP 503", "log lines"
    )
    assert project.values["POSTGRES_PASSWORD"] not in output
    project.write_env(AI_AGENTS_REDIS_URL="redis://redis:6379/0")
    project.run("up", "--quiet")


def _interrupt_when(project: Project, marker: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Start `up`, send SIGINT once `marker` appears in its output (runs of spaces read as one:
    columns widen with the stack's longest name), return the result."""
    command, env = project.command("up", "--quiet", *args)
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    assert process.stdout is not None
    seen = []
    for line in process.stdout:
        seen.append(line)
        if marker in " ".join(line.split()):
            break
    else:
        raise AssertionError("never saw " + marker + "\n" + "".join(seen))
    interrupted = time.monotonic()
    process.send_signal(signal.SIGINT)
    rest, _ = process.communicate(timeout=30)
    assert time.monotonic() - interrupted < 10, "did not stop promptly"
    return subprocess.CompletedProcess(process.args, process.returncode, "".join(seen) + rest, "")


def test_ctrl_c_during_build_then_up_converges(
    tmp_path: Path, make_project: Callable[..., Project]
) -> None:
    repo = copy_repo(tmp_path / "repo")
    dockerfile = repo / "Dockerfile"
    original = dockerfile.read_text()
    dockerfile.write_text(original.replace("WORKDIR /app", "RUN sleep 60\nWORKDIR /app"))
    project = make_project(project_dir=repo)
    # the databases start while the image builds: Ctrl-C may leave their start calls in
    # flight (created, ports already bound), which the next `up` must not call a conflict
    result = _interrupt_when(project, "RUN sleep 60")
    assert result.returncode == 130, result.stdout
    assert "interrupted" in result.stdout
    dockerfile.write_text(original)
    project.run("up", "--quiet")


def test_ctrl_c_during_health_wait_then_up_converges(project: Project) -> None:
    project.write_env(AI_AGENTS_REDIS_URL="redis://no-such-redis-host:6379/0")  # never healthy
    result = _interrupt_when(project, "api waiting")
    assert result.returncode == 130, result.stdout
    project.write_env(AI_AGENTS_REDIS_URL="redis://redis:6379/0")
    project.run("up", "--quiet")


def test_two_ups_at_once_one_refuses(project: Project) -> None:
    command, env = project.command("up", "--quiet")
    first = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    assert first.stdout is not None
    first.stdout.readline()  # it holds the lock once it prints its first line
    second = project.run("up", check=False)
    assert_clear_failure(second, 1, "is busy", "devstack up (pid")
    out, _ = first.communicate(timeout=300)
    assert first.returncode == 0, out
    assert len(project.resources()["containers"]) == len(project.services())  # one each


# --- repairs -----------------------------------------------------------------------------
def test_removed_or_stopped_behind_our_back_is_repaired_alone(project: Project) -> None:
    project.run("up", "--quiet")
    keep = project.container("postgres").id
    project.container("api").remove(force=True)
    project.container("redis").stop()
    status = project.run("status").stdout
    assert "missing" in status and "exited" in status
    redis_id = project.container("redis").id
    plan = project.run("up", "--plan").stdout
    assert "start     container  " + f"{project.name}-redis" in plan
    assert "create    container  " + f"{project.name}-api" in plan
    project.run("up", "--quiet")
    assert project.container("postgres").id == keep
    assert project.container("redis").id == redis_id


def test_leftover_container_holding_the_name(
    project: Project, docker_client: docker.DockerClient
) -> None:
    image = project.values["DEVSTACK_REDIS_IMAGE"]
    # a half-made container of ours (created, never started, stale config): replaced
    docker_client.containers.create(
        image,
        name=f"{project.name}-redis",
        labels={"devstack.project": project.name, "devstack.service": "redis"},
    )
    project.run("up", "--quiet")
    assert project.container("redis").status == "running"
    project.run("down")
    # a stranger's container with our name: refused with a clear message, never removed
    stranger = docker_client.containers.create(image, name=f"{project.name}-api")
    try:
        result = project.run("up", check=False)
        assert_clear_failure(result, 1, f"{project.name}-api exists but is not part of project")
        stranger.reload()
    finally:
        stranger.remove(force=True, v=True)
    project.run("up", "--quiet")
    poll(lambda: project.container("api").status == "running", 10)


def test_engine_refusing_our_api_version_is_renegotiated(project: Project) -> None:
    """A DOCKER_API_VERSION the engine refuses does not break devstack: plain calls are
    unversioned (the engine's own version) and docker-py negotiates its version."""
    result = project.run("status", "--json", env_extra={"DOCKER_API_VERSION": "1.99"})
    assert f'"project": "{project.name}"' in result.stdout
