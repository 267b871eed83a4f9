"""Benchmark devstack against Docker Compose v2 on the same images, in one run.

    python bench/run.py --runs 5
    python bench/run.py --runs 1 --only devstack --scenarios up-noop,status,floor

The stack comes from devstack's own declaration (`devstack.declaration.declare_stack`, through
`devstack.usecases.load_project`): the bench names no service. Each tool gets its own project
name and free host ports (one per port setting the declaration publishes) and works on its own
temporary copy of the build inputs (Dockerfile, .dockerignore, pyproject.toml, certs/,
service/), so the real tree is never modified. Only what the benchmark created is removed
afterwards: by project label (devstack.project / com.docker.compose.project) and by image tags
it made itself. Beside the tools, the *readiness floor* is measured: the declared containers
created by devstack's own DockerEngine, started directly and polled every 20 ms with each
service's declared readiness check.

Raw numbers go to bench/results/<timestamp>.json (gitignored); a table and the targets are
printed at the end. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# The devstack of this checkout, as `python -m devstack` (run from REPO) uses it.
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import docker  # noqa: E402
import docker.errors  # noqa: E402

from devstack import labels  # noqa: E402
from devstack.build import CA_BUNDLE_PATH  # noqa: E402
from devstack.checks import CheckTarget, Completed, HttpGet, NotReady, ReadinessCheck  # noqa: E402
from devstack.docker_engine import DockerEngine  # noqa: E402
from devstack.envfile import read_env_file  # noqa: E402
from devstack.errors import DevstackError  # noqa: E402
from devstack.lock import lock_path  # noqa: E402
from devstack.spec import DEFAULT_CPU_SHARES, Condition, Service, Stack  # noqa: E402
from devstack.usecases import Project, load_project, resolve_images  # noqa: E402

BENCH = REPO / "bench"
COMPOSE_FILE = BENCH / "compose.yaml"
RESULTS = BENCH / "results"
# The build inputs copied into the temporary trees (what the Dockerfile and devstack read).
COPIED = (
    "Dockerfile",
    ".dockerignore",
    "pyproject.toml",
    "certs",
    "service",
    "alembic",
    "image-build",
)
# Files the scenarios edit (in the tools' copies only).
EDITED_FILE = "service/main.py"  # up-source-change appends a comment here
RELOAD_FILE = "service/routes/meta.py"  # hot-reload appends a route to this module's `router`
RELOAD_PATH = "/bench-reload"  # ... served at this path, answering {"mark": ...}
PYPROJECT = "pyproject.toml"  # dependency-change adds DEPENDENCY to the EXTRA extra
EXTRA = "service"
DEPENDENCY = "six>=1.16"  # small, pure Python, not among the service's dependencies
UNRELATED_DIR = "frontend/node_modules"  # unrelated-tree puts UNRELATED_FILES files here
UNRELATED_FILES = 20_000
# Scenario parameters.
TREE_REPEATS = 3  # unrelated-tree: status and no-op up, each this often per tree state
RELOAD_EDITS = 5  # hot-reload: measured saves per run and tool
RELOAD_GAP = 0.5  # s between a new response and the next save (the reloader settles)
RELOAD_POLL = 0.01  # s between requests while waiting for the new response
# Settings inherited from the repo's .env (which images, which CA bundle); the rest is ours.
# .env.example supplies them when there is no .env (it names the local stand-in images).
INHERITED = re.compile(r"DEVSTACK_\w+_IMAGE|DEVSTACK_CA_BUNDLE")
# Environment variables that would override the settings we pass (devstack: the environment
# wins over --env-file; compose: the file and project come from the command line).
SCRUBBED_PREFIXES = ("DEVSTACK_", "POSTGRES_", "AI_AGENTS_", "COMPOSE_")
# A user's interpreter caches bytecode (pip compiles it at install): a caller's "never write
# bytecode" would make every devstack command recompile devstack's modules (~0.15 s here).
SCRUBBED_VARIABLES = frozenset({"PYTHONDONTWRITEBYTECODE"})
POLL = 0.02  # the floor's polling interval (seconds)
CHECK_TIMEOUT = 1.0  # seconds each floor readiness attempt may take
STATE_EVERY = 0.25  # s between the floor's state inspections (every poll for one-shot jobs)
FLOOR_DEADLINE = 180.0
COMMAND_TIMEOUT = 600.0

TOOLS = ("devstack", "compose")
# name -> (title, state required before, state after). States: clean | up | down (volumes kept).
SCENARIOS: dict[str, tuple[str, str, str]] = {
    "up-fresh": ("1. up from nothing (fresh volumes)", "clean", "up"),
    "up-noop": ("3. up, all already up (no-op)", "up", "up"),
    "status": ("4. status (compose ps)", "up", "up"),
    "status-json": ("4b. status --json (compose ps --format json)", "up", "up"),
    "up-source-change": ("6. up after a source change", "up", "up"),
    "unrelated-tree": ("7. 20,000 unrelated files in the tree", "up", "up"),
    "dependency-change": ("8. rebuild after adding a dependency (compose up --build)", "up", "up"),
    "hot-reload": ("9. hot reload: save -> new response (compose: uvicorn --reload)", "up", "up"),
    "down": ("5. down (keep volumes)", "up", "down"),
    "up-volumes": ("2. up with existing volumes", "down", "up"),
    "down-volumes": ("5b. down --volumes", "up", "clean"),
    "up-fresh-1s": ("1b. up from nothing, compose health interval 1s", "clean", "clean"),
    "floor": ("readiness floor (declared start order, 20 ms polling)", "", ""),
    # The same with existing volumes (scenario 2's floor), and with every service started at
    # once, ignoring the declared order (informational: a lower bound).
    "floor-volumes": ("readiness floor, existing volumes", "", ""),
    "floor-parallel": ("readiness floor, every service started at once (jobs in order)", "", ""),
}
FLOORS = ("floor", "floor-volumes", "floor-parallel")
COMPOSE_ONLY = ("up-fresh-1s",)
ORDER = list(SCENARIOS)
# Rows of the table: the scenarios that give one sample per tool and run, and the parts of
# unrelated-tree (measured in the same run with and without the unrelated files).
ROW_TITLES = {
    **{name: title for name, (title, _, _) in SCENARIOS.items()},
    "unrelated-tree:status-clean": "7a. status, clean tree (compose ps)",
    "unrelated-tree:status": "7b. status, 20,000 unrelated files",
    "unrelated-tree:up-clean": "7c. no-op up, clean tree",
    "unrelated-tree:up": "7d. no-op up, 20,000 unrelated files",
}
TABLE_ORDER = [
    "up-fresh",
    "up-fresh-1s",
    "up-volumes",
    "up-noop",
    "status",
    "status-json",
    "down",
    "down-volumes",
    "up-source-change",
    "unrelated-tree:status-clean",
    "unrelated-tree:status",
    "unrelated-tree:up-clean",
    "unrelated-tree:up",
    "dependency-change",
    "hot-reload",
]


# --- small helpers ---------------------------------------------------------------------------
def log(message: str) -> None:
    """One progress line on stderr."""
    print(f"[bench {datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def free_ports(count: int) -> list[int]:
    """`count` distinct free loopback ports (all held open until all are chosen)."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def scrubbed_env(**extra: str) -> dict[str, str]:
    """The process environment without settings that would override ours, plus `extra`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(SCRUBBED_PREFIXES) and k not in SCRUBBED_VARIABLES
    }
    env.update(NO_COLOR="1", COLUMNS="160", **extra)
    return env


def summary(samples: list[float]) -> dict[str, float]:
    """Median, min and max."""
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples)}


def write_env(path: Path, values: dict[str, str]) -> None:
    """A KEY=VALUE file that devstack's envfile reads back unchanged."""
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` in one rename, as editors save (no half-written file for a watcher);
    the temporary name starts with a dot, which reloaders ignore."""
    temporary = path.with_name(f".{path.name}.bench-tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


class CommandFailed(Exception):
    """A measured or preparing command exited non-zero."""


class BenchError(Exception):
    """The benchmark cannot do what a scenario needs (e.g. the declaration lacks it)."""


@dataclass
class Timed:
    """A command's wall time and output."""

    seconds: float
    started_at: float  # time.time() just before the process was spawned
    stdout: str
    stderr: str


def run_timed(command: list[str], env: dict[str, str], cwd: Path) -> Timed:
    """Run `command`, return its wall time; raise CommandFailed on a non-zero exit."""
    started_at = time.time()
    start = time.perf_counter()
    result = subprocess.run(
        command, env=env, cwd=cwd, capture_output=True, text=True, timeout=COMMAND_TIMEOUT
    )
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise CommandFailed(
            f"{' '.join(command)} exited {result.returncode}\n"
            f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
        )
    return Timed(seconds, started_at, result.stdout, result.stderr)


_STAMP = re.compile(r"^(\d\d):(\d\d):(\d\d)\.(\d{3}) (\S+)\s+(\S+)")


def phase_profile(timed: Timed) -> dict[str, Any]:
    """Offsets (s from process spawn) of devstack's timestamped `up --quiet` lines."""
    day = datetime.fromtimestamp(timed.started_at)
    events: list[tuple[float, str, str]] = []
    for line in timed.stdout.splitlines():
        match = _STAMP.match(line)
        if not match:
            continue
        h, m, s, ms = (int(g) for g in match.groups()[:4])
        stamp = day.replace(hour=h, minute=m, second=s, microsecond=ms * 1000).timestamp()
        events.append((round(stamp - timed.started_at, 3), match.group(5), match.group(6)))
    profile: dict[str, Any] = {"total": round(timed.seconds, 3), "events": events}
    if events:
        profile["first_line"] = events[0][0]
        healthy = [t for t, _, phase in events if phase == "healthy"]
        if healthy:
            profile["last_healthy"] = max(healthy)
            profile["after_last_healthy"] = round(timed.seconds - max(healthy), 3)
    return profile


def compose_builder(output: str) -> str:
    """Which builder Compose used, from its plain progress output."""
    if re.search(r"^#\d+ \[", output, re.MULTILINE):
        return "BuildKit"
    if re.search(r"^Step \d+/\d+ :", output, re.MULTILINE):
        return "classic"
    return "unknown"


def with_dependency(pyproject: str, requirement: str, comment: str) -> str:
    """`pyproject` with `requirement` added as the first entry of the EXTRA extra."""
    pattern = re.compile(rf"^(\s*{re.escape(EXTRA)}\s*=\s*\[)[ \t]*$", re.MULTILINE)
    match = pattern.search(pyproject)
    if match is None:
        raise BenchError(f"{PYPROJECT}: no multi-line `{EXTRA} = [` extra to add a dependency to")
    line = f'\n    "{requirement}",  # {comment}'
    return pyproject[: match.end(1)] + line + pyproject[match.end(1) :]


def with_reload_route(module: str, mark: str) -> str:
    """`module` (which defines `router`) plus a route answering {"mark": mark}."""
    if not re.search(r"^router\s*=", module, re.MULTILINE):
        raise BenchError(f"{RELOAD_FILE} defines no module-level `router` to add a route to")
    return (
        f"{module.rstrip()}\n\n\n"
        f'@router.get("{RELOAD_PATH}", include_in_schema=False)\n'
        "async def bench_reload() -> dict[str, str]:\n"
        f'    return {{"mark": "{mark}"}}\n'
    )


def http_get(host: str, port: int, path: str) -> tuple[int, bytes] | None:
    """Status and body of a GET, or None when nothing answered."""
    conn = http.client.HTTPConnection(host, port, timeout=2.0)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def poll_until(predicate: Callable[[], bool], deadline: float, interval: float) -> float:
    """Evaluate `predicate` every `interval` s until true; the perf_counter when it was."""
    while True:
        if predicate():
            return time.perf_counter()
        if time.perf_counter() > deadline:
            raise TimeoutError("the expected answer did not come before the deadline")
        time.sleep(interval)


def make_unrelated_tree(root: Path, files: int) -> None:
    """`files` small JavaScript files under `root`/UNRELATED_DIR, 100 per package folder."""
    base = root / UNRELATED_DIR
    for index in range(files):
        package = base / f"pkg-{index // 100:04d}"
        if index % 100 == 0:
            package.mkdir(parents=True)
        (package / f"index-{index % 100:02d}.js").write_text(f"module.exports = {index};\n")


def reload_target(stack: Stack, tree: Path) -> tuple[Service, HttpGet]:
    """The declared service that serves RELOAD_FILE over HTTP from a bind mount of `tree`."""
    edited = (tree / RELOAD_FILE).resolve()
    for service in stack.services:
        mounted = any(
            m.kind == "bind" and edited.is_relative_to(Path(m.source).resolve())
            for m in service.mounts
        )
        if mounted and isinstance(service.readiness, HttpGet):
            return service, service.readiness
    raise BenchError(
        f"no declared service bind-mounts {RELOAD_FILE} and answers HTTP "
        "(the bench runs with DEVSTACK_DEV_MODE=true)"
    )


# --- the two tools ---------------------------------------------------------------------------
@dataclass
class Tool:
    """One tool's project: its name, ports, temporary tree and the commands it runs."""

    name: str  # devstack | compose
    project: str
    tree: Path
    env_file: Path  # devstack's settings (outside the tree: not a build input)
    ports: dict[str, int]  # the declaration's port settings (DEVSTACK_*_PORT) -> host port
    settings: dict[str, str]
    state: str = "clean"
    edits: int = 0
    dependency_edits: int = 0
    reference_image: str = ""  # compose: the image devstack built, under the bench's tag
    build_image: str = ""  # compose: where `up --build` puts its own build
    pyproject: str = ""  # the tree's pyproject.toml as copied
    _project: Project | None = None

    def write_env_file(self) -> None:
        """The settings file devstack reads (`--env-file`) and the bench declares from."""
        ports = {k: str(v) for k, v in self.ports.items()}
        write_env(self.env_file, {"DEVSTACK_PROJECT": self.project, **ports, **self.settings})

    def declared(self) -> Project:
        """This tool's settings and declared stack (Compose's with the same ports)."""
        if self._project is None:
            self._project = load_project(self.tree, self.env_file)
        return self._project

    # -- commands ---------------------------------------------------------------------------
    def devstack(self, *args: str) -> Timed:
        """`python -m devstack --project-dir TREE --env-file ENV args...`."""
        command = [sys.executable, "-m", "devstack", "--project-dir", str(self.tree)]
        command += ["--env-file", str(self.env_file), *args]
        return run_timed(command, scrubbed_env(), REPO)

    def compose(self, *args: str, interval: str = "", image: str = "") -> Timed:
        """`docker compose -f bench/compose.yaml -p PROJECT args...` with our settings."""
        env = scrubbed_env(
            DEVSTACK_BENCH_CONTEXT=str(self.tree),
            DEVSTACK_BENCH_SERVICE_DIR=str(self.tree / "service"),
            DEVSTACK_BENCH_API_IMAGE=image or self.reference_image,
            **{k: str(v) for k, v in self.ports.items()},
            **{k: v for k, v in self.settings.items() if k != "DEVSTACK_CA_BUNDLE"},
        )
        if interval:
            env["DEVSTACK_HEALTH_INTERVAL"] = interval
        command = ["docker", "compose", "--ansi", "never", "-f", str(COMPOSE_FILE)]
        command += ["-p", self.project, *args]
        return run_timed(command, env, BENCH)

    def up(self) -> Timed:
        """devstack `up --quiet` | compose `up -d --wait`."""
        if self.name == "devstack":
            return self.devstack("up", "--quiet")
        return self.compose("up", "-d", "--wait")

    def status(self) -> Timed:
        """devstack `status` | compose `ps`."""
        return self.devstack("status") if self.name == "devstack" else self.compose("ps")

    def down(self, volumes: bool = False) -> Timed:
        """devstack `down --quiet [--volumes]` | compose `down [-v]`."""
        if self.name == "devstack":
            return self.devstack("down", "--quiet", *(["--volumes"] if volumes else []))
        return self.compose("down", *(["-v"] if volumes else []))

    def rebuild_up(self) -> Timed:
        """devstack `up` (it rebuilds what changed) | compose `up -d --wait --build`."""
        if self.name == "devstack":
            return self.up()
        return self.compose(
            "--progress", "plain", "up", "-d", "--wait", "--build", image=self.build_image
        )

    def run_simple(self, scenario: str) -> Timed:
        """One command for a scenario that gives one sample per run."""
        if scenario in {"up-fresh", "up-noop", "up-volumes"}:
            return self.up()
        if scenario == "status":
            return self.status()
        if scenario == "status-json":
            if self.name == "devstack":
                return self.devstack("status", "--json")
            return self.compose("ps", "--format", "json")
        if scenario == "down":
            return self.down()
        if scenario == "down-volumes":
            return self.down(volumes=True)
        if scenario == "up-source-change":
            self.edit_source()
            return self.rebuild_up()
        if scenario == "up-fresh-1s":
            return self.compose("up", "-d", "--wait", interval="1")
        raise ValueError(scenario)

    def edit_source(self) -> None:
        """A change that touches no dependency: one more comment line in a service module."""
        self.edits += 1
        with (self.tree / EDITED_FILE).open("a") as handle:
            handle.write(f"# devstack bench edit {self.edits}\n")

    # -- states -----------------------------------------------------------------------------
    def ensure(self, wanted: str) -> None:
        """Reach `wanted` (clean | up | down) with unmeasured commands."""
        if wanted in {"", self.state}:
            return
        if wanted == "clean":
            self.down(volumes=True)
        elif wanted == "up":
            self.up()
        elif wanted == "down":
            if self.state == "clean":
                self.up()
            self.down()
        self.state = wanted


# --- the readiness floor ---------------------------------------------------------------------
def _wait_event(event: threading.Event, failed: threading.Event, deadline: float) -> None:
    """Block until `event` is set; stop if another service failed or the deadline passed."""
    while not event.wait(POLL):
        if failed.is_set():
            raise BenchError("another service failed")
        if time.perf_counter() > deadline:
            raise TimeoutError("a dependency was not ready before the deadline")


def poll_ready(
    engine: DockerEngine, container: str, service: Service, deadline: float, release: str = ""
) -> float:
    """Run `service`'s declared readiness check every POLL s until it passes (a one-shot job:
    until it completed; no check: at once); the perf_counter when it did. `release`: a held
    service's release signal, re-sent before every attempt (as devstack does)."""
    check: ReadinessCheck | None = service.readiness
    if check is None and service.one_shot:
        check = Completed()
    if check is None:
        return time.perf_counter()
    begun = time.perf_counter()
    state, state_at = engine.state(container), begun
    while True:
        now = time.perf_counter()
        if check.waits_for_exit or now - state_at >= STATE_EVERY:
            state, state_at = engine.state(container), now
        if release and state.status == "running":
            engine.signal(container, release)
        if state.status in {"exited", "dead"} and not check.waits_for_exit:
            raise BenchError(
                f"{service.name} exited with code {state.exit_code} while starting:\n"
                f"{engine.logs(container)}"
            )
        target = CheckTarget(engine, container, state, CHECK_TIMEOUT)
        try:
            check.check(target)
            return time.perf_counter()
        except NotReady:
            pass
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{service.name}: {check.describe()} did not pass in time")
        time.sleep(POLL)


def measure_floor(
    engine: DockerEngine, stack: Stack, create_volumes: bool = True, parallel: bool = False
) -> dict[str, float]:
    """Create every declared service's container with devstack's engine and start it as the
    declaration orders (after its dependencies that must be ready before it starts; with those
    it may start beside), or all at once (`parallel`). A held service (`Service.held`) starts
    once its dependencies that are not held themselves were started and is released (its
    signal, re-sent until ready) once its `before_start` ones are ready, as devstack's plan
    does. Each service's time is when its own readiness check passed and its dependencies
    were ready (s from the first engine call); `floor` is the last of them."""
    start = time.perf_counter()
    deadline = start + FLOOR_DEADLINE
    engine.create_network(stack.network, stack.project)
    for volume in stack.volumes if create_volumes else ():
        engine.create_volume(volume, stack.project)
    started = {s.name: threading.Event() for s in stack.services}
    ready = {s.name: threading.Event() for s in stack.services}
    failed = threading.Event()
    times: dict[str, float] = {}
    errors: list[BaseException] = []

    def run(service: Service) -> None:
        try:
            container = engine.create_container(stack, service)
            release_after = []
            for dependency in service.depends_on:
                early = not dependency.before_start and dependency.condition is Condition.READY
                if parallel and not service.one_shot and dependency.condition is Condition.READY:
                    continue  # "all at once", but a job still needs what it runs against
                if service.held is not None and dependency.before_start:
                    release_after.append(dependency.service)  # held until it is ready
                    if stack.service(dependency.service).held is not None:
                        continue  # held ones start side by side, not one after another
                    early = True  # but started once the dependency's start call returned
                events = started if early else ready
                _wait_event(events[dependency.service], failed, deadline)
            start_call = time.perf_counter()
            engine.start(container)
            started[service.name].set()
            if service.held is not None:
                for name in release_after:
                    _wait_event(ready[name], failed, deadline)
                times[f"{service.name}_release_call"] = time.perf_counter() - start
                engine.signal(container, service.held.signal)
                if service.held.cpu_shares:  # back to the default weight, as devstack does
                    engine.set_cpu_shares(container, DEFAULT_CPU_SHARES)
            signal = service.held.signal if service.held else ""
            own = poll_ready(engine, container, service, deadline, signal)
            for dependency in service.depends_on:  # ready only once its dependencies are
                _wait_event(ready[dependency.service], failed, deadline)
            dependencies = [times[d.service] for d in service.depends_on]
            times[f"{service.name}_start_call"] = start_call - start
            times[f"{service.name}_after_start"] = own - start_call
            times[service.name] = max([own - start, *dependencies])
            ready[service.name].set()
        except BaseException as exc:
            errors.append(exc)
            failed.set()

    threads = [threading.Thread(target=run, args=(s,), daemon=True) for s in stack.services]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    times["floor"] = max(times[s.name] for s in stack.services)
    return times


def remove_labelled(
    client: docker.DockerClient, label: str, value: str, volumes: bool = True
) -> None:
    """Remove containers, networks and volumes carrying `label=value` (and nothing else)."""
    query = {"label": [f"{label}={value}"]}
    for container in client.containers.list(all=True, filters=query):
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True, v=True)
    for network in client.networks.list(filters=query):
        with contextlib.suppress(docker.errors.NotFound):
            network.remove()
    for volume in client.volumes.list(filters=query) if volumes else []:
        with contextlib.suppress(docker.errors.NotFound):
            volume.remove(force=True)


# --- the run ---------------------------------------------------------------------------------
@dataclass
class Bench:
    """One benchmark run: its tools, samples, floors and what it created."""

    runs: int
    tools: list[str]
    scenarios: list[str]
    client: docker.DockerClient
    unrelated_files: int = UNRELATED_FILES
    run_id: str = field(default_factory=lambda: secrets.token_hex(3))
    work: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="devstack-bench.")))
    samples: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    profiles: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    floors: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    made_images: set[str] = field(default_factory=set)
    made_image_ids: set[str] = field(default_factory=set)  # compose builds a later one untags
    preexisting_images: set[str] = field(default_factory=set)
    settings: dict[str, str] = field(default_factory=dict)
    tool_objs: dict[str, Tool] = field(default_factory=dict)
    floor_env: Path = field(default_factory=Path)
    reference_images: dict[str, str] = field(default_factory=dict)  # devstack tag -> bench tag
    service_names: tuple[str, ...] = ()
    engine: DockerEngine = field(init=False)

    def __post_init__(self) -> None:
        self.engine = DockerEngine(self.client.api)  # devstack's engine, on our client

    def record(self, scenario: str, tool: str, seconds: float) -> None:
        """One sample."""
        self.samples.setdefault(scenario, {}).setdefault(tool, []).append(seconds)

    @property
    def base(self) -> Path:
        """The pristine copy of the build inputs (the floor's project directory)."""
        return self.work / "base"

    @property
    def floor_project(self) -> str:
        return f"bench-floor-{self.run_id}"

    # -- setup ------------------------------------------------------------------------------
    def setup(self) -> None:
        """Copy the build inputs, choose ports for every declared port setting, write each
        tool's settings file."""
        defaults = read_env_file(REPO / ".env.example")
        inherited = {**defaults, **read_env_file(REPO / ".env")}
        self.settings = {k: v for k, v in inherited.items() if INHERITED.fullmatch(k) and v}
        self.settings["DEVSTACK_DEV_MODE"] = "true"
        self.preexisting_images = {tag for image in self.client.images.list() for tag in image.tags}
        base = self.base
        base.mkdir()
        for name in COPIED:
            source = REPO / name
            if source.is_dir():
                shutil.copytree(source, base / name, ignore=shutil.ignore_patterns("__pycache__"))
            elif source.is_file():
                shutil.copy2(source, base / name)
        (base / CA_BUNDLE_PATH).unlink(missing_ok=True)
        # A marker unique to this run: the images built from these trees carry tags no one
        # else uses, so devstack dropping a replaced tag never touches anyone's image.
        with (base / EDITED_FILE).open("a") as handle:
            handle.write(f"# devstack bench run {self.run_id}\n")
        # The declaration says which ports exist and which setting moves each.
        probe = self.work / "probe.env"
        write_env(probe, {"DEVSTACK_PROJECT": f"bench-probe-{self.run_id}", **self.settings})
        stack = load_project(base, probe).stack
        self.service_names = stack.names
        keys = [port.setting for port, _ in stack.published_ports()]
        if not all(keys):
            raise BenchError("a declared port has no setting; the bench cannot move it")
        ports = iter(free_ports(len(keys) * (len(TOOLS) + 1)))
        for name in TOOLS:
            tree = self.work / name
            shutil.copytree(base, tree)
            bundle = self.settings.get("DEVSTACK_CA_BUNDLE")
            if name == "compose" and bundle:  # what devstack adds to its build context
                shutil.copy2(bundle, tree / CA_BUNDLE_PATH)
            prefix = "ds" if name == "devstack" else "cp"
            tool = Tool(
                name,
                f"bench-{prefix}-{self.run_id}",
                tree,
                self.work / f"{name}.env",
                {key: next(ports) for key in keys},
                self.settings,
                pyproject=(tree / PYPROJECT).read_text(),
            )
            tool.write_env_file()
            self.tool_objs[name] = tool
        self.floor_env = self.work / "floor.env"
        floor_ports = {key: str(next(ports)) for key in keys}
        write_env(
            self.floor_env, {"DEVSTACK_PROJECT": self.floor_project, **floor_ports, **self.settings}
        )

    def warm_up(self) -> None:
        """Unmeasured: build devstack's images for the copy (cached layers), run each tool
        once, and warm Compose's own build cache (BuildKit) when a scenario builds."""
        devstack = self.tool_objs["devstack"]
        log(f"warm-up: devstack up (builds {devstack.project}'s images from cached layers)")
        devstack.up()
        devstack.state = "up"
        built = {image for image, _, _ in self.built_state(devstack).values()}
        for index, image in enumerate(sorted(built)):
            repository = image.rpartition(":")[0].replace("/", "-")
            reference = f"devstack-bench/{repository}:{self.run_id}-{index}"
            self.client.images.get(image).tag(*reference.rsplit(":", 1))
            self.made_images.add(reference)
            self.reference_images[image] = reference
        devstack.ensure("clean")
        if "compose" not in self.tools:
            return
        if len(self.reference_images) != 1:
            raise BenchError(
                f"bench/compose.yaml runs one built image; the stack has "
                f"{len(self.reference_images)} builds"
            )
        compose = self.tool_objs["compose"]
        compose.reference_image = next(iter(self.reference_images.values()))
        compose.build_image = f"devstack-bench/compose-build:{self.run_id}"
        self.made_images.add(compose.build_image)
        log("warm-up: compose up")
        compose.up()
        compose.state = "up"
        if {"up-source-change", "dependency-change"} & set(self.scenarios):
            log("warm-up: compose build (its build cache for up --build)")
            timed = compose.compose("--progress", "plain", "build", image=compose.build_image)
            self.notes["compose_builder"] = compose_builder(timed.stdout + timed.stderr)
            self.made_image_ids.add(self.client.images.get(compose.build_image).id)
        compose.ensure("clean")

    def built_state(self, tool: Tool) -> dict[str, tuple[str, str, str]]:
        """Built service -> (image, image id, container id) in the tool's project: what a
        rebuild changes. Images nobody had before the run are removed at the end."""
        containers = self.engine.snapshot(tool.project).containers
        state = {
            s.name: (containers[s.name].image, containers[s.name].image_id, containers[s.name].id)
            for s in tool.declared().stack.services
            if s.build and s.name in containers
        }
        self.made_images.update({image for image, _, _ in state.values()})
        self.made_images -= self.preexisting_images
        return state

    # -- measuring --------------------------------------------------------------------------
    def run_tool(self, tool: Tool, index: int) -> None:
        """Every selected scenario once for `tool`, each from its required state."""
        for scenario in self.scenarios:
            if scenario in FLOORS or (scenario in COMPOSE_ONLY and tool.name != "compose"):
                continue
            _, before, after = SCENARIOS[scenario]
            tool.ensure(before)
            try:
                self.run_scenario(tool, scenario, index)
            except (CommandFailed, BenchError, DevstackError, TimeoutError) as exc:
                self.failures.append(f"{tool.name} {scenario} run {index}: {exc}")
                log(f"FAILED {tool.name} {scenario}: {str(exc).splitlines()[0]}")
                tool.state = "unknown"
                tool.ensure("clean")
                continue
            tool.state = after
            if tool.name == "devstack" and after == "up":
                self.built_state(tool)
            if scenario in COMPOSE_ONLY:
                tool.state = "up"
                tool.ensure("clean")
        tool.ensure("clean")

    def run_scenario(self, tool: Tool, scenario: str, index: int) -> None:
        """Measure one scenario for one tool and record its samples."""
        if scenario == "unrelated-tree":
            self.unrelated_tree(tool, index)
            return
        if scenario == "dependency-change":
            self.dependency_change(tool, index)
            return
        if scenario == "hot-reload":
            self.hot_reload(tool, index)
            return
        timed = tool.run_simple(scenario)
        self.record(scenario, tool.name, timed.seconds)
        if tool.name == "devstack" and scenario.startswith(("up", "down")):
            profile = phase_profile(timed)
            profile["run"] = index
            self.profiles.setdefault(scenario, []).append(profile)
        if tool.name == "compose" and scenario == "up-source-change":
            self.made_image_ids.add(self.client.images.get(tool.build_image).id)
        log(f"run {index}/{self.runs} {tool.name:<8} {scenario:<17} {timed.seconds:7.3f}s")

    def unrelated_tree(self, tool: Tool, index: int) -> None:
        """status and no-op up, clean and with UNRELATED_FILES files in frontend/node_modules
        (not in .dockerignore, copied by no Dockerfile line); a devstack up with them must
        not rebuild or recreate anything."""
        stash = self.work / f"unrelated-{tool.name}"
        if not stash.exists():
            make_unrelated_tree(stash, self.unrelated_files)
        top = Path(UNRELATED_DIR).parts[0]

        def measure(suffix: str) -> None:
            for _ in range(TREE_REPEATS):
                self.record(f"unrelated-tree:status{suffix}", tool.name, tool.status().seconds)
            for _ in range(TREE_REPEATS):
                self.record(f"unrelated-tree:up{suffix}", tool.name, tool.up().seconds)

        measure("-clean")
        before = self.built_state(tool) if tool.name == "devstack" else {}
        os.rename(stash / top, tool.tree / top)
        try:
            first = tool.up()
            after = self.built_state(tool) if tool.name == "devstack" else {}
            measure("")
        finally:
            os.rename(tool.tree / top, stash / top)
        if tool.name == "devstack":
            changed = sorted(name for name in before if before[name] != after.get(name))
            self.notes.setdefault("unrelated_tree", []).append(
                {"run": index, "first_up_s": round(first.seconds, 3), "rebuilt": changed}
            )
            if changed:  # back to the clean tree's images, unmeasured
                tool.up()
        log(
            f"run {index}/{self.runs} {tool.name:<8} unrelated-tree    first up with the "
            f"files {first.seconds:.3f}s"
        )

    def dependency_change(self, tool: Tool, index: int) -> None:
        """Add DEPENDENCY to the EXTRA extra of the tool's pyproject.toml (a comment unique
        to the tool and run: no cache of another build applies), then rebuild and converge."""
        tool.dependency_edits += 1
        comment = f"bench {tool.name} {self.run_id} {tool.dependency_edits}"
        (tool.tree / PYPROJECT).write_text(with_dependency(tool.pyproject, DEPENDENCY, comment))
        before = self.built_state(tool) if tool.name == "devstack" else {}
        timed = tool.rebuild_up()
        self.record("dependency-change", tool.name, timed.seconds)
        if tool.name == "compose":
            self.notes["compose_builder"] = compose_builder(timed.stdout + timed.stderr)
            self.made_image_ids.add(self.client.images.get(tool.build_image).id)
        else:
            after = self.built_state(tool)
            if before == after:
                raise BenchError("devstack up rebuilt nothing after the dependency change")
        log(f"run {index}/{self.runs} {tool.name:<8} dependency-change {timed.seconds:7.3f}s")

    def hot_reload(self, tool: Tool, index: int) -> None:
        """Save RELOAD_FILE with a new route answer; time until the server answers with it.
        devstack runs the dev server its declaration names; Compose's file runs plain
        `uvicorn --reload`. One unmeasured save first (the route appears), RELOAD_EDITS
        measured saves, then the original file is put back (no rebuild on the next up)."""
        service, check = reload_target(tool.declared().stack, tool.tree)
        if tool.name == "devstack":
            self.notes["hot_reload_devstack_command"] = list(service.command)
        path = tool.tree / RELOAD_FILE
        original = path.read_text()

        def save_and_wait(mark: str) -> float:
            expected = json.dumps({"mark": mark}, separators=(",", ":")).encode()
            saved = time.perf_counter()
            write_atomically(path, with_reload_route(original, mark))

            def answered() -> bool:
                reply = http_get(check.host, check.port, RELOAD_PATH)
                return reply is not None and reply == (200, expected)

            return poll_until(answered, saved + 60, RELOAD_POLL) - saved

        try:
            save_and_wait(f"warm-{index}")
            for edit in range(1, RELOAD_EDITS + 1):
                time.sleep(RELOAD_GAP)
                seconds = save_and_wait(f"{index}-{edit}")
                self.record("hot-reload", tool.name, seconds)
                log(f"run {index}/{self.runs} {tool.name:<8} hot-reload        {seconds:7.3f}s")
        finally:
            write_atomically(path, original)

        def restored() -> bool:
            reply = http_get(check.host, check.port, RELOAD_PATH)
            return reply is not None and reply[0] == 404

        poll_until(restored, time.perf_counter() + 60, RELOAD_POLL)

    def run_floor(self, index: int) -> None:
        """The selected floors, each from nothing but floor-volumes (after the fresh floor)."""
        wanted = [f for f in FLOORS if f in self.scenarios]
        if "floor-volumes" in wanted and "floor" not in wanted:
            wanted.insert(0, "floor")  # initializes the volumes; not recorded
            record_fresh = False
        else:
            record_fresh = True
        stack = resolve_images(load_project(self.base, self.floor_env).stack)
        self.ensure_floor_images(stack)
        try:
            for variant in wanted:
                times = measure_floor(
                    self.engine,
                    stack,
                    create_volumes=variant != "floor-volumes",
                    parallel=variant == "floor-parallel",
                )
                keep = variant == "floor" and "floor-volumes" in wanted
                remove_labelled(self.client, labels.PROJECT, stack.project, volumes=not keep)
                if variant == "floor" and not record_fresh:
                    continue
                times = {k: round(v, 4) for k, v in times.items()}
                self.floors.setdefault(variant, []).append(times)
                self.record(variant, "floor", times["floor"])
                each = "  ".join(f"{name} {times[name]:.3f}s" for name in stack.names)
                log(f"run {index}/{self.runs} {variant:<15} {each}")
        finally:
            remove_labelled(self.client, labels.PROJECT, stack.project)

    def ensure_floor_images(self, stack: Stack) -> None:
        """The floor's tree is the pristine copy, so its build tags are the ones the warm-up
        built; put back a tag that devstack dropped since (a recreate onto a newer image)."""
        for service in stack.services:
            if not service.build:
                continue
            with contextlib.suppress(docker.errors.ImageNotFound):
                self.client.images.get(service.image)
                continue
            reference = self.reference_images.get(service.image)
            if reference is None:
                raise BenchError(f"floor: image {service.image} was never built in this run")
            self.client.images.get(reference).tag(*service.image.rsplit(":", 1))
            self.made_images.add(service.image)

    def run(self) -> None:
        """Set up, warm up, then every run: each tool (alternating first), then the floors."""
        self.setup()
        self.warm_up()
        for index in range(1, self.runs + 1):
            # Alternate which tool goes first, so slow drift of the machine hits both alike.
            order = self.tools if index % 2 else list(reversed(self.tools))
            for name in order:
                self.run_tool(self.tool_objs[name], index)
            if any(f in self.scenarios for f in FLOORS):
                self.run_floor(index)

    # -- cleanup ----------------------------------------------------------------------------
    def cleanup(self) -> None:
        """Remove every container, network, volume and image tag the run created."""
        for tool in self.tool_objs.values():
            with contextlib.suppress(Exception):
                if tool.state not in {"clean"}:
                    tool.ensure("clean")
            label = labels.PROJECT if tool.name == "devstack" else "com.docker.compose.project"
            remove_labelled(self.client, label, tool.project)
            lock_path(tool.project).unlink(missing_ok=True)  # devstack keeps its lock files
        remove_labelled(self.client, labels.PROJECT, self.floor_project)
        for image in sorted(self.made_images - self.preexisting_images):
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                self.client.images.remove(image)
        for image_id in self.made_image_ids:  # untagged by a later build; never forced
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                self.client.images.remove(image_id)
        shutil.rmtree(self.work, ignore_errors=True)


# --- report ----------------------------------------------------------------------------------
def fmt(values: dict[str, float] | None) -> str:
    """`median min max`, or a dash."""
    if not values:
        return f"{'-':>23}"
    return f"{values['median']:7.3f} {values['min']:7.3f} {values['max']:7.3f}"


def table(bench: Bench) -> str:
    """The results table: every row's medians per tool, the ratio, the floors."""
    stats = {
        scenario: {tool: summary(v) for tool, v in by_tool.items() if v}
        for scenario, by_tool in bench.samples.items()
    }
    floors = {f: stats.get(f, {}).get("floor") for f in FLOORS}
    floor_of = {"up-fresh": "floor", "up-fresh-1s": "floor", "up-volumes": "floor-volumes"}
    lines = [
        f"{'scenario':<64} {'devstack med/min/max (s)':>23}   {'compose med/min/max (s)':>23}"
        f"   {'ds/compose':>10}   {'floor med (s)':>13}",
    ]
    lines.append("-" * len(lines[0]))
    for row in TABLE_ORDER:
        if row not in stats:
            continue
        ds = stats[row].get("devstack")
        cp = stats[row].get("compose")
        if row == "up-fresh-1s":
            ds = stats.get("up-fresh", {}).get("devstack")  # devstack at seed settings
        ratio = f"{ds['median'] / cp['median']:10.2f}" if ds and cp else f"{'-':>10}"
        floor = floors.get(floor_of.get(row, ""))
        floor_text = f"{floor['median']:13.3f}" if floor else ""
        title = ROW_TITLES[row].replace("20,000", f"{bench.unrelated_files:,}")
        lines.append(f"{title:<64} {fmt(ds)}   {fmt(cp)}   {ratio}   {floor_text}".rstrip())
    for variant, runs in bench.floors.items():
        lines.append("")
        lines.append(f"{SCENARIOS[variant][0]}, s from the first engine call (med/min/max):")
        keys = [
            key
            for name in bench.service_names
            for key in (f"{name}_start_call", f"{name}_after_start", name)
        ]
        for key in [*keys, "floor"]:
            values = [f[key] for f in runs if key in f]
            if values:
                lines.append(f"  {key:<24} {fmt(summary(values))}")
    for note in bench.notes.get("unrelated_tree", []):
        rebuilt = ", ".join(note["rebuilt"]) or "nothing"
        lines.append("")
        lines.append(
            f"unrelated tree, run {note['run']}: first devstack up with the files "
            f"{note['first_up_s']:.3f}s; rebuilt/recreated: {rebuilt}"
        )
    if "compose_builder" in bench.notes:
        lines.append(f"compose builder: {bench.notes['compose_builder']}")
    if "hot_reload_devstack_command" in bench.notes:
        command = " ".join(bench.notes["hot_reload_devstack_command"])
        lines.append(f"hot reload, devstack's declared command: {command}")
        if plain_reloader(bench):
            lines.append(
                "  (the same reloader as compose.yaml's: until the declaration runs another dev "
                "server, e.g. devstack/devserver.py, row 9 compares uvicorn --reload with itself)"
            )
    return "\n".join(lines)


# (issue, target, measured (scenario, tool), limit, reference (scenario, tool) or None for an
# absolute limit in seconds). "old": the bench's first targets; "#12": issue 12's.
DS = "devstack"
CP = "compose"
TARGETS: list[tuple[str, str, tuple[str, str], float, tuple[str, str] | None]] = [
    ("old", "up from nothing <= 1.3x floor", ("up-fresh", DS), 1.3, ("floor", "floor")),
    ("old", "up from nothing >= 7x faster than compose (seed settings)", ("up-fresh", DS),
     1 / 7, ("up-fresh", CP)),
    ("old", "up from nothing faster than compose with 1s interval", ("up-fresh", DS), 1.0,
     ("up-fresh-1s", CP)),
    ("old", "up with existing volumes <= 1.3s", ("up-volumes", DS), 1.3, None),
    ("old", "no-op up <= 0.45s", ("up-noop", DS), 0.45, None),
    ("old", "status <= 0.30s", ("status", DS), 0.30, None),
    ("old", "down <= 0.8x compose's", ("down", DS), 0.8, ("down", CP)),
    ("#12", "up from nothing <= 0.6x compose with 1s interval", ("up-fresh", DS), 0.6,
     ("up-fresh-1s", CP)),
    ("#12", "up from nothing <= 1.15x floor (declared order)", ("up-fresh", DS), 1.15,
     ("floor", "floor")),
    ("#12", "up with existing volumes <= 1.15x its floor", ("up-volumes", DS), 1.15,
     ("floor-volumes", "floor")),
    ("#12", "no-op up <= 0.5x compose's no-op up", ("up-noop", DS), 0.5, ("up-noop", CP)),
    ("#12", "status <= 2.5x compose ps", ("status", DS), 2.5, ("status", CP)),
    ("#12", "down <= 1.0x compose down", ("down", DS), 1.0, ("down", CP)),
    ("#12", "down --volumes <= 1.0x compose down -v", ("down-volumes", DS), 1.0,
     ("down-volumes", CP)),
    ("#12", "status, 20,000 unrelated files <= 1.10x clean", ("unrelated-tree:status", DS),
     1.10, ("unrelated-tree:status-clean", DS)),
    ("#12", "no-op up, 20,000 unrelated files <= 1.10x clean", ("unrelated-tree:up", DS),
     1.10, ("unrelated-tree:up-clean", DS)),
    ("#12", "dependency-change rebuild <= 0.5x compose up --build", ("dependency-change", DS),
     0.5, ("dependency-change", CP)),
    ("#12", "hot reload <= 0.5x plain uvicorn --reload", ("hot-reload", DS), 0.5,
     ("hot-reload", CP)),
]  # fmt: skip


def _result(
    issue: str,
    name: str,
    measured: float | None,
    limit: float | None,
    reference: float | None = None,
    relative: bool = False,
    unit: str = "s",
) -> dict[str, Any]:
    """One target's numbers and verdict: `measured` / `reference` when `relative`, else
    `measured` itself, against `limit` ("info" when there is no limit)."""
    ratio = measured / reference if measured is not None and reference else None
    checked = ratio if relative else measured
    if limit is None:
        verdict = "info"
    elif checked is None:
        verdict = "n/a"
    else:
        verdict = "PASS" if checked <= limit else "FAIL"
    return {
        "issue": issue,
        "target": name,
        "measured": measured,
        "reference": reference,
        "ratio": ratio,
        "limit": limit,
        "unit": unit,
        "verdict": verdict,
    }


def targets(bench: Bench) -> list[dict[str, Any]]:
    """Every target's verdict from the medians (n/a when a side was not measured)."""

    def med(key: tuple[str, str]) -> float | None:
        values = bench.samples.get(key[0], {}).get(key[1])
        return statistics.median(values) if values else None

    results = []
    for issue, name, measured, limit, reference in TARGETS:
        base = med(reference) if reference else None
        results.append(_result(issue, name, med(measured), limit, base, reference is not None))
    notes = bench.notes.get("unrelated_tree", [])
    rebuilds = float(sum(1 for n in notes if n["rebuilt"])) if notes else None
    results.append(
        _result("#12", "20,000 unrelated files: runs that rebuilt <= 0", rebuilds, 0, unit="")
    )
    up, parallel = med(("up-fresh", DS)), med(("floor-parallel", "floor"))
    if up is not None and parallel:
        name = "up from nothing / floor, every service at once"
        results.append(_result("info", name, up, None, parallel, relative=True))
    for result in results:
        result["target"] = result["target"].replace("20,000", f"{bench.unrelated_files:,}")
        if result["target"].startswith("hot reload") and plain_reloader(bench):
            result["verdict"] = "n/a"
            result["why"] = "devstack declares plain uvicorn --reload too: the ratio is noise"
    return results


def plain_reloader(bench: Bench) -> bool:
    """Whether devstack's declared dev server is Compose's plain `uvicorn --reload`
    (then the hot-reload ratio compares a reloader with itself)."""
    command = bench.notes.get("hot_reload_devstack_command") or []
    return bool(command) and Path(command[0]).name == "uvicorn" and "--reload" in command


def targets_text(results: list[dict[str, Any]]) -> str:
    """One line per target: verdict, name, numbers, ratio against its limit."""
    lines = [
        "targets (devstack medians; ratio = devstack / reference; old = the bench's first "
        "targets, #12 = issue 12):"
    ]
    for r in results:
        measured = r["measured"]
        shown = "-" if measured is None else f"{measured:.3f}s"
        if not r["unit"]:
            shown = "-" if measured is None else f"{measured:.0f}"
        if r["reference"] is not None:
            shown += f" / {r['reference']:.3f}s"
        if r["ratio"] is not None:
            shown += f" = {r['ratio']:.2f}"
        limit = "" if r["limit"] is None else f"(limit {r['limit']:.3g})"
        lines.append(
            f"  {r['verdict']:<4} {r['issue']:<4} {r['target']:<60} {shown:<28} {limit}".rstrip()
        )
        if r.get("why"):
            lines.append(f"{'':<12}{r['why']}")
    return "\n".join(lines)


def tool_versions() -> dict[str, str]:
    """Versions of Compose, dockerd, Python, docker-py and the checkout's commit."""

    def out(command: list[str]) -> str:
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return done.stdout.strip() if done.returncode == 0 else ""

    return {
        "compose": out(["docker", "compose", "version", "--short"]),
        "docker_server": out(["docker", "version", "--format", "{{.Server.Version}}"]),
        "git_commit": out(["git", "-C", str(REPO), "rev-parse", "HEAD"]),
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
        "docker_py": str(docker.__version__),
    }


def git_dirty() -> bool:
    """Whether devstack/ had uncommitted changes (others may edit it during a run)."""
    done = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "--", "devstack"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return bool(done.stdout.strip())


def compose_available() -> bool:
    """Whether `docker compose` (the v2 plugin) runs."""
    try:
        done = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


@contextlib.contextmanager
def load_watch() -> Iterator[dict[str, Any]]:
    """Load averages before and after (a noise hint)."""
    info: dict[str, Any] = {"loadavg_before": os.getloadavg(), "cpus": os.cpu_count()}
    yield info
    info["loadavg_after"] = os.getloadavg()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """--runs, --only, --scenarios, --unrelated-files."""
    parser = argparse.ArgumentParser(
        prog="python bench/run.py",
        description="Time devstack against Docker Compose v2 and the readiness floor.",
    )
    parser.add_argument("--runs", type=int, default=5, help="repetitions (default 5)")
    parser.add_argument("--only", choices=TOOLS, help="measure one tool only")
    parser.add_argument(
        "--scenarios",
        default=",".join(ORDER),
        help=f"comma-separated subset of: {','.join(ORDER)} (default: all)",
    )
    parser.add_argument(
        "--unrelated-files",
        type=int,
        default=UNRELATED_FILES,
        help=f"files in unrelated-tree's {UNRELATED_DIR} (default {UNRELATED_FILES})",
    )
    args = parser.parse_args(argv)
    wanted = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = sorted(set(wanted) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenarios {unknown}; choose from {ORDER}")
    args.scenarios = [s for s in ORDER if s in wanted]
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.unrelated_files < 1:
        parser.error("--unrelated-files must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit 1 if a command failed or it was interrupted."""
    args = parse_args(argv)
    # load_project reads the environment too (it wins over the env file): keep it ours.
    for key in [k for k in os.environ if k.startswith(SCRUBBED_PREFIXES)]:
        log(f"ignoring {key} from the environment")
        del os.environ[key]
    tools = [args.only] if args.only else list(TOOLS)
    if "compose" in tools and not compose_available():
        print(
            "docker compose (v2 plugin) is not installed: `bash bench/install-compose.sh` "
            "installs it from Debian trixie's package without a registry.\n"
            "Measuring devstack only this time.",
            file=sys.stderr,
        )
        tools = ["devstack"]
        if args.only == "compose":
            return 1
    try:
        client = docker.from_env(version="auto", timeout=300)
        client.ping()
    except docker.errors.DockerException as exc:
        print(f"no Docker engine: {exc}", file=sys.stderr)
        return 1
    bench = Bench(args.runs, tools, args.scenarios, client, args.unrelated_files)
    stamp = datetime.now().strftime("%Y%m%dT%H%M%S")
    log(f"run id {bench.run_id}; tools {tools}; scenarios {args.scenarios}; runs {args.runs}")
    started = time.perf_counter()
    versions = tool_versions()  # the devstack commit measured is the one at the start
    interrupted = False
    with load_watch() as machine:
        try:
            bench.run()
        except KeyboardInterrupt:
            interrupted = True
            log("interrupted: cleaning up what the benchmark created")
        except (CommandFailed, BenchError, DevstackError) as exc:
            bench.failures.append(f"setup: {exc}")
            log(f"FAILED setup: {exc}")
        finally:
            bench.cleanup()
    text = table(bench)
    checks = targets(bench)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{stamp}.json"
    out.write_text(
        json.dumps(
            {
                "timestamp": stamp,
                "run_id": bench.run_id,
                "runs": args.runs,
                "tools": tools,
                "scenarios": args.scenarios,
                "unrelated_files": args.unrelated_files,
                "interrupted": interrupted,
                "duration_s": round(time.perf_counter() - started, 1),
                "host": {
                    "platform": platform.platform(),
                    **machine,
                    **versions,
                    "git_commit_end": tool_versions()["git_commit"],
                    "devstack_dirty": git_dirty(),
                    "devserver_in_tree": (REPO / "devstack" / "devserver.py").is_file(),
                },
                "services": list(bench.service_names),
                "images": {**bench.settings, "references": bench.reference_images},
                "projects": {t.name: t.project for t in bench.tool_objs.values()},
                "samples": bench.samples,
                "summary": {
                    s: {t: summary(v) for t, v in by.items() if v}
                    for s, by in bench.samples.items()
                },
                "floor": bench.floors,
                "notes": bench.notes,
                "devstack_phase_profiles": bench.profiles,
                "targets": checks,
                "failures": bench.failures,
                "table": text,
            },
            indent=2,
        )
    )
    print(text)
    print()
    print(targets_text(checks))
    if bench.failures:
        print(f"\n{len(bench.failures)} command(s) failed; see 'failures' in the JSON")
    print(f"\nraw numbers: {out.relative_to(REPO)}")
    return 1 if interrupted or bench.failures else 0


if __name__ == "__main__":
    sys.exit(main())
