"""The daily loop on a real engine: logs (merged, tailed, followed across a restart and a
recreate), exec and its shortcuts, restart, a subset up/down, `up --plan` after an env change,
and hot reload of the bind-mounted service code (with its latency)."""

from __future__ import annotations

import queue
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import httpx

from devstack.cli.logs import split_stamp

from .conftest import REPO_ROOT, Project, poll

PREFIX = re.compile(r"^(postgres|redis|migrate|api|worker|worker-reports) +\| ")
DOCKER_STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z ")
HOT_RELOAD_DEADLINE = 1.5  # seconds from saving a file to the API serving the change


def cli(project: Project, *args: str) -> tuple[list[str], dict[str, str]]:
    return project.command(*args)


class Lines:
    """A child's output lines, read by a thread so that a test can wait with a deadline."""

    def __init__(self, stream: IO[str]):
        self.queue: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.queue.put(line.rstrip("\n"))
        self.queue.put(None)

    def wait_for(self, wanted: Callable[[str], bool], timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.queue.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                raise AssertionError(f"output ended; last lines: {self.seen[-10:]}")
            self.seen.append(line)
            if wanted(line):
                return line
        raise AssertionError(f"no such line within {timeout}s; last lines: {self.seen[-10:]}")

    def rest(self, timeout: float = 10) -> list[str]:
        """Everything up to the end of the output."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            line = self.queue.get(timeout=left)
            if line is None:
                return self.seen
            self.seen.append(line)
        raise AssertionError("output did not end")


def started_at(project: Project, service: str) -> int:
    stamp, _ = split_stamp(project.container(service).attrs["State"]["StartedAt"] + " -")
    assert stamp is not None
    return stamp


# --- logs --------------------------------------------------------------------------------
def test_logs_show_every_service_with_its_prefix(running: Project) -> None:
    lines = running.run("logs").stdout.splitlines()
    assert lines and all(PREFIX.match(line) for line in lines), lines[:5]
    assert len({line.index("|") for line in lines}) == 1  # prefixes padded to one width
    assert not any(DOCKER_STAMP.match(line.partition("| ")[2]) for line in lines)

    def has(service: str, text: str) -> bool:
        return any(line.startswith(f"{service} ") and text in line for line in lines)

    assert has("postgres", "database system is ready to accept connections")
    assert has("redis", "Ready to accept connections")
    assert has("api", "listening on http://0.0.0.0:8000")
    assert has("worker", "ready.")


def test_logs_tail_of_one_service(running: Project) -> None:
    lines = running.run("logs", "api", "--tail", "5").stdout.splitlines()
    assert 1 <= len(lines) <= 5
    assert all(line.startswith("api  | ") for line in lines), lines


def test_logs_since(running: Project) -> None:
    marker = f"/since-{secrets.token_hex(4)}"
    httpx.get(f"{running.api_url}{marker}", timeout=5)
    assert marker in poll(lambda: running.run("logs", "api", "--since", "1m").stdout)
    future = running.run("logs", "--since", "2999-01-01T00:00:00Z").stdout
    assert future == ""
    bad = running.run("logs", "--since", "yesterday", check=False)
    assert bad.returncode == 2 and "--since 'yesterday'" in bad.stderr


def test_logs_follow_across_restart_and_recreate(project: Project, tmp_path: Path) -> None:
    project.run("up", "--quiet")
    token = secrets.token_hex(4)
    command, env = cli(project, "logs", "-f")
    with (tmp_path / "follow.err").open("w+") as errors:
        child = subprocess.Popen(
            command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=errors, text=True,
        )  # fmt: skip
        try:
            assert child.stdout is not None
            lines = Lines(child.stdout)
            lines.wait_for(lambda line: "Application startup complete" in line)

            def request(path: str) -> Callable[[], bool]:
                return lambda: httpx.get(f"{project.api_url}{path}", timeout=2).status_code == 404

            poll(request(f"/before-{token}"))
            lines.wait_for(lambda line: f"/before-{token}" in line and line.startswith("api "))
            project.container("api").restart(timeout=10)
            lines.wait_for(lambda line: "Finished server process" in line)
            poll(request(f"/after-restart-{token}"))
            lines.wait_for(lambda line: f"/after-restart-{token}" in line)
            project.write_env(AI_AGENTS_LOG_LEVEL="debug")  # `up` recreates the API container
            project.run("up", "--quiet")
            poll(request(f"/after-recreate-{token}"))
            lines.wait_for(lambda line: f"/after-recreate-{token}" in line)
            child.send_signal(signal.SIGINT)
            assert child.wait(timeout=15) == 0
            seen = lines.rest()
            merged = project.run("logs", "postgres").stdout.splitlines()
        finally:
            if child.poll() is None:
                child.kill()
        errors.seek(0)
        notes = errors.read()
    for path in (f"/before-{token}", f"/after-restart-{token}", f"/after-recreate-{token}"):
        assert sum(path in line for line in seen) == 1, path  # nothing repeated on resume
    # untouched (the prefix is padded to the longest name shown)
    text = [line.partition("| ")[2] for line in seen if line.startswith("postgres ")]
    assert text == [line.partition("| ")[2] for line in merged]
    assert "container stopped; waiting for it to run again" in notes
    assert "Traceback" not in notes


# --- exec --------------------------------------------------------------------------------
def test_exec_returns_the_commands_exit_code(running: Project) -> None:
    assert running.run("exec", "api", "--", "sh", "-c", "exit 7", check=False).returncode == 7
    both = running.run("exec", "api", "--", "sh", "-c", "echo out; echo err >&2")
    assert both.stdout == "out\n" and both.stderr == "err\n"


def test_exec_redis_cli(running: Project) -> None:
    assert running.run("exec", "redis", "--", "redis-cli", "ping").stdout.strip() == "PONG"
    assert running.run("redis-cli", "ping").stdout.strip() == "PONG"


def test_psql_shortcut_connects_as_the_configured_user(running: Project) -> None:
    out = running.run("psql", "-c", "SELECT 1").stdout
    assert "1" in [line.strip() for line in out.splitlines()], out
    who = running.run("psql", "-At", "-c", "SELECT current_user || '@' || current_database()")
    assert who.stdout.strip() == "tester@testdb"


def test_psql_reads_stdin(running: Project) -> None:
    command, env = cli(running, "psql", "-At")
    done = subprocess.run(
        command, env=env, input="SELECT 40+2;\n", capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout.strip()) == (0, "42"), done.stderr


def test_exec_missing_binary(running: Project) -> None:
    missing = running.run("exec", "postgres", "--", "no-such-binary", check=False)
    assert missing.returncode in (126, 127)
    assert "hint:" in missing.stderr and "no-such-binary" in missing.stderr


def test_exec_on_a_service_that_is_not_running(project: Project) -> None:
    result = project.run("exec", "api", "--", "true", check=False)
    assert result.returncode == 1
    assert "api is not running" in result.stderr and "up api" in result.stderr
    logs = project.run("logs", check=False)
    assert logs.returncode == 1 and "no container; `python -m devstack up api`" in logs.stderr


# --- restart, subsets, plan ----------------------------------------------------------------
def test_restart_api_keeps_its_container(project: Project) -> None:
    project.run("up", "--quiet")
    before_id, before_start = project.container("api").id, started_at(project, "api")
    project.run("restart", "api")
    assert project.container("api").id == before_id
    assert started_at(project, "api") > before_start
    assert httpx.get(f"{project.api_url}/health", timeout=5).status_code == 200


def test_up_and_down_a_subset(project: Project) -> None:
    project.run("up", "redis", "--quiet")
    assert project.resources()["containers"] == [f"{project.name}-redis"]
    project.run("up", "api", "--quiet")  # with its dependencies: the migrations job too
    for service in ("postgres", "redis", "api"):
        assert project.container(service).status == "running"
    assert project.container("migrate").attrs["State"]["ExitCode"] == 0
    assert f"{project.name}-worker" not in project.resources()["containers"]
    project.run("down", "api")
    assert sorted(project.resources()["containers"]) == [
        f"{project.name}-migrate",
        f"{project.name}-postgres",
        f"{project.name}-redis",
    ]
    assert project.container("postgres").status == "running"


def test_plan_names_the_changed_env_key(project: Project) -> None:
    project.run("up", "--quiet")
    project.write_env(AI_AGENTS_REDIS_URL="redis://redis:6379/3")
    plan = project.run("up", "--plan").stdout
    line = next(line for line in plan.splitlines() if f"{project.name}-api" in line)
    assert line.startswith(f"recreate  container  {project.name}-api")
    assert line.endswith("(env AI_AGENTS_REDIS_URL changed)")
    assert f"keep      container  {project.name}-postgres" in plan


# --- hot reload ---------------------------------------------------------------------------
def test_hot_reload_picks_up_edits_and_new_files(
    tmp_path: Path, make_project: Callable[..., Project]
) -> None:
    source = tmp_path / "src"
    for name in ("Dockerfile", ".dockerignore", "pyproject.toml", "stack.py"):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, source / name)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("certs", "service", "alembic", "image-build", "monitoring"):
        shutil.copytree(REPO_ROOT / name, source / name, ignore=skip)
    project = make_project(project_dir=source)
    project.run("up", "--quiet")
    meta = source / "service" / "routes" / "meta.py"
    original = meta.read_text()
    assert 'SERVICE_NAME = "devstack-api"' in original

    def serves(name: str) -> bool:
        try:
            return httpx.get(f"{project.api_url}/", timeout=1).json().get("name") == name
        except (httpx.HTTPError, ValueError):
            return False

    def measure(edit: Callable[[], object], name: str) -> float:
        start = time.monotonic()
        edit()
        poll(lambda: serves(name), timeout=15, interval=0.05)
        return time.monotonic() - start

    token = secrets.token_hex(3)
    samples = []
    for i in range(5):
        name = f"hot-{token}-{i}"
        edited = original.replace('"devstack-api"', f'"{name}"')
        samples.append(measure(lambda text=edited: meta.write_text(text), name))
        print(f"hot-reload latency: {samples[-1]:.2f}s")
    median = statistics.median(samples)
    print(f"hot-reload latencies: {' '.join(f'{s:.2f}' for s in samples)}; median {median:.2f}s")

    def add_module() -> None:  # a new file, imported by an edited route module
        (source / "service" / "routes" / "hot_extra.py").write_text(f'VALUE = "new-{token}"\n')
        meta.write_text(
            original.replace(
                'SERVICE_NAME = "devstack-api"',
                "from service.routes.hot_extra import VALUE\n\nSERVICE_NAME = VALUE",
            )
        )

    new_file = measure(add_module, f"new-{token}")
    print(f"hot-reload latency (new module): {new_file:.2f}s")
    assert median < HOT_RELOAD_DEADLINE, samples
    assert new_file < HOT_RELOAD_DEADLINE
    assert httpx.get(f"{project.api_url}/health", timeout=5).status_code == 200
    assert not list((source / "service").rglob("__pycache__"))  # read-only mount, no .pyc
