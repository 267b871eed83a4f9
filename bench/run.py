"""Benchmark devstack against Docker Compose v2 on the same images, in one run.

    python bench/run.py --runs 5
    python bench/run.py --runs 3 --only devstack --scenarios up-fresh,status

Each tool gets its own project name and free host ports and works on its own temporary copy
of the build inputs (Dockerfile, .dockerignore, pyproject.toml, certs/, service/), so the real
tree is never modified. Only what the benchmark created is removed afterwards: by project
label (devstack.project / com.docker.compose.project / devstack.bench) and by image tags it
made itself. Beside the tools, the *readiness floor* is measured: the three containers started
directly with docker-py and polled every 20 ms through their real protocols.

Raw numbers go to bench/results/<timestamp>.json (gitignored); a table and the targets are
printed at the end. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
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

import docker
import docker.errors
import docker.types

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
COMPOSE_FILE = BENCH / "compose.yaml"
RESULTS = BENCH / "results"
# The build inputs copied into the temporary trees (what the Dockerfile and devstack read).
COPIED = ("Dockerfile", ".dockerignore", "pyproject.toml", "certs", "service")
EDITED_FILE = "service/main.py"  # scenario up-source-change appends a comment here
CA_BUNDLE_IN_CONTEXT = "certs/devstack-ca-bundle.pem"  # where devstack puts DEVSTACK_CA_BUNDLE
BENCH_LABEL = "devstack.bench"  # on the floor's resources and the bench's helper images
# Settings inherited from the repo's .env (which images, which CA bundle); the rest is ours.
INHERITED = (
    "DEVSTACK_POSTGRES_IMAGE",
    "DEVSTACK_REDIS_IMAGE",
    "DEVSTACK_PYTHON_IMAGE",
    "DEVSTACK_CA_BUNDLE",
)
DEFAULTS = {
    "DEVSTACK_POSTGRES_IMAGE": "devstack-local/postgres:17-trixie",
    "DEVSTACK_REDIS_IMAGE": "devstack-local/redis:7-bookworm",
    "DEVSTACK_PYTHON_IMAGE": "devstack-local/python:3.11-bookworm",
}
# Environment variables that would override the settings we pass (devstack: the environment
# wins over --env-file; compose: the file and project come from the command line).
SCRUBBED_PREFIXES = ("DEVSTACK_", "POSTGRES_", "AI_AGENTS_", "COMPOSE_")
POLL = 0.02  # the floor's polling interval (seconds)
COMMAND_TIMEOUT = 600.0

TOOLS = ("devstack", "compose")
# name -> (title, state required before, state after). States: clean | up | down (volumes kept).
SCENARIOS: dict[str, tuple[str, str, str]] = {
    "up-fresh": ("1. up from nothing (fresh volumes)", "clean", "up"),
    "up-noop": ("3. up, all already up (no-op)", "up", "up"),
    "status": ("4. status (compose ps)", "up", "up"),
    "status-json": ("4b. status --json (compose ps --format json)", "up", "up"),
    "up-source-change": ("6. up after a source change", "up", "up"),
    "down": ("5. down (keep volumes)", "up", "down"),
    "up-volumes": ("2. up with existing volumes", "down", "up"),
    "down-volumes": ("5b. down --volumes", "up", "clean"),
    "up-fresh-1s": ("1b. up from nothing, compose health interval 1s", "clean", "clean"),
    "floor": ("readiness floor (docker-py, 20 ms polling)", "", ""),
    # Informational floors: the same with existing volumes (scenario 2's floor), and with the
    # API started together with its dependencies instead of after them (its /health answers
    # 200 only once Postgres and Redis answer, so this is still real readiness).
    "floor-volumes": ("readiness floor, existing volumes", "", ""),
    "floor-parallel": ("readiness floor, API started with its dependencies", "", ""),
}
FLOORS = ("floor", "floor-volumes", "floor-parallel")
ORDER = list(SCENARIOS)
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
]


# --- small helpers ---------------------------------------------------------------------------
def log(message: str) -> None:
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


def read_env(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of an env file (enough for the repo's .env; quotes stripped)."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        values[key.strip()] = value.strip().strip("'\"")
    return values


def scrubbed_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(SCRUBBED_PREFIXES)}
    env.update(NO_COLOR="1", COLUMNS="160", **extra)
    return env


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "median": statistics.median(samples),
        "min": min(samples),
        "max": max(samples),
    }


class CommandFailed(Exception):
    pass


@dataclass
class Timed:
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


# --- the two tools ---------------------------------------------------------------------------
@dataclass
class Tool:
    """One tool's project: its name, ports, temporary tree and the commands it runs."""

    name: str  # devstack | compose
    project: str
    tree: Path
    ports: tuple[int, int, int]  # postgres, redis, api
    settings: dict[str, str]
    state: str = "clean"
    edits: int = 0
    api_images: set[str] = field(default_factory=set)  # API image tags seen (devstack)
    reference_image: str = ""  # compose: the image devstack built, under the bench's tag
    build_image: str = ""  # compose: where `up --build` puts its own build

    @property
    def env_file(self) -> Path:
        return self.tree / "bench.env"

    def write_env_file(self) -> None:
        values = {
            "DEVSTACK_PROJECT": self.project,
            "DEVSTACK_POSTGRES_PORT": str(self.ports[0]),
            "DEVSTACK_REDIS_PORT": str(self.ports[1]),
            "DEVSTACK_API_PORT": str(self.ports[2]),
            **self.settings,
        }
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))

    # -- commands ---------------------------------------------------------------------------
    def devstack(self, *args: str) -> Timed:
        command = [sys.executable, "-m", "devstack", "--project-dir", str(self.tree)]
        command += ["--env-file", str(self.env_file), *args]
        return run_timed(command, scrubbed_env(), REPO)

    def compose(self, *args: str, interval: str = "", image: str = "") -> Timed:
        env = scrubbed_env(
            DEVSTACK_POSTGRES_PORT=str(self.ports[0]),
            DEVSTACK_REDIS_PORT=str(self.ports[1]),
            DEVSTACK_API_PORT=str(self.ports[2]),
            DEVSTACK_BENCH_CONTEXT=str(self.tree),
            DEVSTACK_BENCH_SERVICE_DIR=str(self.tree / "service"),
            DEVSTACK_BENCH_API_IMAGE=image or self.reference_image,
            **{k: v for k, v in self.settings.items() if k != "DEVSTACK_CA_BUNDLE"},
        )
        if interval:
            env["DEVSTACK_HEALTH_INTERVAL"] = interval
        command = ["docker", "compose", "--ansi", "never", "-f", str(COMPOSE_FILE)]
        command += ["-p", self.project, *args]
        return run_timed(command, env, BENCH)

    def up(self) -> Timed:
        if self.name == "devstack":
            return self.devstack("up", "--quiet")
        return self.compose("up", "-d", "--wait")

    def down(self, volumes: bool = False) -> Timed:
        if self.name == "devstack":
            return self.devstack("down", "--quiet", *(["--volumes"] if volumes else []))
        return self.compose("down", *(["-v"] if volumes else []))

    def run_scenario(self, scenario: str) -> Timed:
        if scenario in {"up-fresh", "up-noop", "up-volumes"}:
            return self.up()
        if scenario == "status":
            return self.devstack("status") if self.name == "devstack" else self.compose("ps")
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
            if self.name == "devstack":
                return self.up()
            return self.compose("up", "-d", "--wait", "--build", image=self.build_image)
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
def _poll(check: Callable[[], bool], deadline: float) -> float:
    """Call `check` every POLL s until it returns True; the perf_counter when it did."""
    while time.perf_counter() < deadline:
        try:
            if check():
                return time.perf_counter()
        except Exception:  # not ready yet: refused, reset, protocol errors of a starting server
            pass
        time.sleep(POLL)
    raise TimeoutError("not ready before the deadline")


class PostgresCheck:
    """A real login and `SELECT 1` over TCP, on one event loop reused across attempts."""

    def __init__(self, port: int, user: str, password: str, database: str):
        self.port, self.user, self.password, self.database = port, user, password, database
        self.loop = asyncio.new_event_loop()

    async def _attempt(self) -> bool:
        import asyncpg

        conn = await asyncpg.connect(
            host="127.0.0.1",
            port=self.port,
            user=self.user,
            password=self.password,
            database=self.database,
            timeout=1.0,
            ssl=False,
        )
        try:
            return bool(await conn.fetchval("SELECT 1", timeout=1.0) == 1)
        finally:
            await conn.close(timeout=1.0)

    def __call__(self) -> bool:
        return self.loop.run_until_complete(self._attempt())

    def close(self) -> None:
        self.loop.close()


def _redis_check(port: int) -> Callable[[], bool]:
    def check() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(64).startswith(b"+PONG")

    return check


def _http_check(port: int) -> Callable[[], bool]:
    def check() -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1.0)
        try:
            conn.request("GET", "/health")
            return conn.getresponse().status == 200
        finally:
            conn.close()

    return check


def _healthcheck(test: list[str], settings: dict[str, str]) -> dict[str, Any]:
    nano = 1_000_000_000
    return {
        "test": test,
        "interval": int(float(settings.get("DEVSTACK_HEALTH_INTERVAL", "10")) * nano),
        "timeout": int(float(settings.get("DEVSTACK_HEALTH_TIMEOUT", "5")) * nano),
        "retries": int(settings.get("DEVSTACK_HEALTH_RETRIES", "3")),
    }


def measure_floor(
    api: docker.APIClient,
    project: str,
    ports: tuple[int, int, int],
    settings: dict[str, str],
    api_image: str,
    service_dir: Path,
    create_volumes: bool = True,
    api_with_dependencies: bool = False,
) -> dict[str, float]:
    """Start the stack directly and time each service's first real answer (seconds from the
    first docker-py call). The API starts once Postgres and Redis answer, or with them."""
    label = {BENCH_LABEL: project}
    user, password, database = "devstack", "devstack-example-password", "devstack"
    network = f"{project}_net"
    deadline = time.perf_counter() + 180
    start = time.perf_counter()
    api.create_network(network, driver="bridge", labels=label)
    for volume in ("pgdata", "redisdata") if create_volumes else ():
        api.create_volume(f"{project}_{volume}", labels=label)

    def create(
        service: str,
        image: str,
        container_port: int,
        host_port: int,
        mounts: list[docker.types.Mount],
        **kwargs: Any,
    ) -> str:
        host_config = api.create_host_config(
            port_bindings={container_port: ("127.0.0.1", host_port)}, mounts=mounts
        )
        endpoint = api.create_endpoint_config(aliases=[service])
        created = api.create_container(
            image,
            name=f"{project}-{service}",
            labels=label,
            ports=[container_port],
            host_config=host_config,
            networking_config=api.create_networking_config({network: endpoint}),
            detach=True,
            **kwargs,
        )
        return str(created["Id"])

    times: dict[str, float] = {}
    errors: list[BaseException] = []
    pg_check = PostgresCheck(ports[0], user, password, database)

    def service_thread(name: str, make: Callable[[], str], check: Callable[[], bool]) -> None:
        try:
            container = make()
            started = time.perf_counter()
            api.start(container)
            times[f"{name}_start_call"] = started - start
            times[name] = _poll(check, deadline) - start
        except BaseException as exc:
            errors.append(exc)

    postgres = threading.Thread(
        target=service_thread,
        args=(
            "postgres",
            lambda: create(
                "postgres",
                settings["DEVSTACK_POSTGRES_IMAGE"],
                5432,
                ports[0],
                [docker.types.Mount("/var/lib/postgresql/data", f"{project}_pgdata")],
                environment={
                    "POSTGRES_USER": user,
                    "POSTGRES_PASSWORD": password,
                    "POSTGRES_DB": database,
                },
                stop_signal="SIGINT",
                healthcheck=_healthcheck(
                    ["CMD-SHELL", "pg_isready -h 127.0.0.1 -U $POSTGRES_USER -d $POSTGRES_DB"],
                    settings,
                ),
            ),
            pg_check,
        ),
    )
    redis = threading.Thread(
        target=service_thread,
        args=(
            "redis",
            lambda: create(
                "redis",
                settings["DEVSTACK_REDIS_IMAGE"],
                6379,
                ports[1],
                [docker.types.Mount("/data", f"{project}_redisdata")],
                command=["redis-server", "--appendonly", "yes"],
                healthcheck=_healthcheck(["CMD", "redis-cli", "ping"], settings),
            ),
            _redis_check(ports[1]),
        ),
    )
    postgres.start()
    redis.start()
    api_container = create(  # created while the dependencies start; started once both answer
        "api",
        api_image,
        8000,
        ports[2],
        [docker.types.Mount("/app/service", str(service_dir), type="bind", read_only=True)],
        environment={
            "AI_AGENTS_DATABASE_URL": (
                f"postgresql+asyncpg://{user}:{password}@postgres:5432/{database}"
            ),
            "AI_AGENTS_REDIS_URL": "redis://redis:6379/0",
            "AI_AGENTS_CELERY_BROKER_URL": "redis://redis:6379/1",
            "AI_AGENTS_ENVIRONMENT": "development",
        },
        command=[
            *("uvicorn", "service.main:app", "--host", "0.0.0.0", "--port", "8000"),
            *("--reload", "--reload-dir", "/app/service"),
        ],
        healthcheck=_healthcheck(["CMD", "curl", "-fsS", "http://localhost:8000/health"], settings),
    )
    if not api_with_dependencies:
        postgres.join()
        redis.join()
        if errors:
            raise errors[0]
    api_started = time.perf_counter()
    api.start(api_container)
    times["api_start_call"] = api_started - start
    times["api"] = _poll(_http_check(ports[2]), deadline) - start
    postgres.join()
    redis.join()
    pg_check.close()
    if errors:
        raise errors[0]
    times["api_after_start"] = times["api"] - times["api_start_call"]
    times["floor"] = times["api"]
    return times


def remove_labelled(
    client: docker.DockerClient, label: str, value: str, volumes: bool = True
) -> None:
    """Remove containers, networks and volumes carrying `label=value` (and nothing else)."""
    query = {"label": [f"{label}={value}"]}
    for container in client.containers.list(all=True, filters=query):
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)
    for network in client.networks.list(filters=query):
        with contextlib.suppress(docker.errors.NotFound):
            network.remove()
    for volume in client.volumes.list(filters=query) if volumes else []:
        with contextlib.suppress(docker.errors.NotFound):
            volume.remove(force=True)


# --- the run ---------------------------------------------------------------------------------
@dataclass
class Bench:
    runs: int
    tools: list[str]
    scenarios: list[str]
    client: docker.DockerClient
    run_id: str = field(default_factory=lambda: secrets.token_hex(3))
    work: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="devstack-bench.")))
    samples: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    profiles: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    floors: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    made_images: set[str] = field(default_factory=set)
    made_image_ids: set[str] = field(default_factory=set)  # compose builds a later one untags
    preexisting_images: set[str] = field(default_factory=set)
    settings: dict[str, str] = field(default_factory=dict)
    tool_objs: dict[str, Tool] = field(default_factory=dict)
    floor_ports: tuple[int, int, int] = (0, 0, 0)
    reference_image: str = ""

    def record(self, scenario: str, tool: str, seconds: float) -> None:
        self.samples.setdefault(scenario, {}).setdefault(tool, []).append(seconds)

    # -- setup ------------------------------------------------------------------------------
    def setup(self) -> None:
        inherited = read_env(REPO / ".env")
        self.settings = {k: inherited.get(k) or DEFAULTS.get(k, "") for k in INHERITED}
        self.settings = {k: v for k, v in self.settings.items() if v}
        self.settings["DEVSTACK_DEV_MODE"] = "true"
        self.preexisting_images = {tag for image in self.client.images.list() for tag in image.tags}
        ports = free_ports(9)
        base = self.work / "base"
        base.mkdir()
        for name in COPIED:
            source = REPO / name
            if source.is_dir():
                shutil.copytree(source, base / name, ignore=shutil.ignore_patterns("__pycache__"))
            elif source.is_file():
                shutil.copy2(source, base / name)
        (base / CA_BUNDLE_IN_CONTEXT).unlink(missing_ok=True)
        # A marker unique to this run: the API images built from these trees carry tags no one
        # else uses, so devstack dropping a replaced tag never touches anyone's image.
        with (base / EDITED_FILE).open("a") as handle:
            handle.write(f"# devstack bench run {self.run_id}\n")
        for index, name in enumerate(TOOLS):
            tree = self.work / name
            shutil.copytree(base, tree)
            bundle = self.settings.get("DEVSTACK_CA_BUNDLE")
            if name == "compose" and bundle:  # what devstack adds to its build context
                shutil.copy2(bundle, tree / CA_BUNDLE_IN_CONTEXT)
            port_triple = (ports[3 * index], ports[3 * index + 1], ports[3 * index + 2])
            prefix = "ds" if name == "devstack" else "cp"
            tool = Tool(name, f"bench-{prefix}-{self.run_id}", tree, port_triple, self.settings)
            tool.write_env_file()
            self.tool_objs[name] = tool
        self.floor_ports = (ports[6], ports[7], ports[8])

    def warm_up(self) -> None:
        """Unmeasured: build devstack's API image for the copy (cached layers), run each tool
        once, and warm Compose's own build cache (BuildKit) for the source-change scenario."""
        devstack = self.tool_objs["devstack"]
        log(f"warm-up: devstack up (builds {devstack.project}'s API image from cached layers)")
        devstack.up()
        devstack.state = "up"
        image = self._devstack_api_image(devstack)
        self.reference_image = f"devstack-bench/api:{self.run_id}"
        repository, _, tag = self.reference_image.partition(":")
        self.client.images.get(image).tag(repository, tag)
        self.made_images.add(self.reference_image)
        devstack.ensure("clean")
        if "compose" in self.tools:
            compose = self.tool_objs["compose"]
            compose.reference_image = self.reference_image
            compose.build_image = f"devstack-bench/compose-api:{self.run_id}"
            self.made_images.add(compose.build_image)
            log("warm-up: compose up, and compose build (BuildKit cache for up --build)")
            compose.up()
            compose.state = "up"
            compose.compose("build", "api", image=compose.build_image)
            self.made_image_ids.add(self.client.images.get(compose.build_image).id)
            compose.ensure("clean")

    def _devstack_api_image(self, tool: Tool) -> str:
        inspected = self.client.api.inspect_container(f"{tool.project}-api")
        image = str(inspected["Config"]["Image"])
        tool.api_images.add(image)
        if image not in self.preexisting_images:
            self.made_images.add(image)
        return image

    # -- measuring --------------------------------------------------------------------------
    def run_tool(self, tool: Tool, index: int) -> None:
        for scenario in self.scenarios:
            if scenario in FLOORS or (scenario == "up-fresh-1s" and tool.name != "compose"):
                continue
            _, before, after = SCENARIOS[scenario]
            tool.ensure(before)
            try:
                timed = tool.run_scenario(scenario)
            except CommandFailed as exc:
                self.failures.append(f"{tool.name} {scenario} run {index}: {exc}")
                log(f"FAILED {tool.name} {scenario}: {str(exc).splitlines()[0]}")
                tool.state = "unknown"
                tool.ensure("clean")
                continue
            tool.state = after
            self.record(scenario, tool.name, timed.seconds)
            if tool.name == "devstack" and scenario.startswith(("up", "down")):
                profile = phase_profile(timed)
                profile["run"] = index
                self.profiles.setdefault(scenario, []).append(profile)
            if tool.name == "devstack" and after == "up":
                self._devstack_api_image(tool)
            if tool.name == "compose" and scenario == "up-source-change":
                self.made_image_ids.add(self.client.images.get(tool.build_image).id)
            if scenario == "up-fresh-1s":
                tool.state = "up"
                tool.ensure("clean")
            log(f"run {index}/{self.runs} {tool.name:<8} {scenario:<17} {timed.seconds:7.3f}s")
        tool.ensure("clean")

    def run_floor(self, index: int) -> None:
        """The selected floors, each from nothing but floor-volumes (after the fresh floor)."""
        project = f"bench-floor-{self.run_id}"
        wanted = [f for f in FLOORS if f in self.scenarios]
        if "floor-volumes" in wanted and "floor" not in wanted:
            wanted.insert(0, "floor")  # initializes the volumes; not recorded
            record_fresh = False
        else:
            record_fresh = True
        service_dir = self.tool_objs["devstack"].tree / "service"
        try:
            for variant in wanted:
                times = measure_floor(
                    self.client.api,
                    project,
                    self.floor_ports,
                    self.settings,
                    self.reference_image,
                    service_dir,
                    create_volumes=variant != "floor-volumes",
                    api_with_dependencies=variant == "floor-parallel",
                )
                keep = variant == "floor" and "floor-volumes" in wanted
                remove_labelled(self.client, BENCH_LABEL, project, volumes=not keep)
                if variant == "floor" and not record_fresh:
                    continue
                times = {k: round(v, 4) for k, v in times.items()}
                self.floors.setdefault(variant, []).append(times)
                self.record(variant, "floor", times["floor"])
                log(
                    f"run {index}/{self.runs} {variant:<15} postgres {times['postgres']:.3f}s"
                    f"  redis {times['redis']:.3f}s  api {times['api']:.3f}s"
                )
        finally:
            remove_labelled(self.client, BENCH_LABEL, project)

    def run(self) -> None:
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
        for tool in self.tool_objs.values():
            with contextlib.suppress(Exception):
                if tool.state not in {"clean"}:
                    tool.ensure("clean")
            label = "devstack.project" if tool.name == "devstack" else "com.docker.compose.project"
            remove_labelled(self.client, label, tool.project)
            # devstack's per-project lock file (it keeps them; ours are done with)
            (Path(tempfile.gettempdir()) / f"devstack-{tool.project}.lock").unlink(missing_ok=True)
        remove_labelled(self.client, BENCH_LABEL, f"bench-floor-{self.run_id}")
        for image in sorted(self.made_images - self.preexisting_images):
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                self.client.images.remove(image)
        for image_id in self.made_image_ids:  # untagged by a later build; never forced
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                self.client.images.remove(image_id)
        shutil.rmtree(self.work, ignore_errors=True)


# --- report ----------------------------------------------------------------------------------
def fmt(values: dict[str, float] | None) -> str:
    if not values:
        return f"{'-':>23}"
    return f"{values['median']:7.3f} {values['min']:7.3f} {values['max']:7.3f}"


def table(bench: Bench) -> str:
    stats = {
        scenario: {tool: summary(v) for tool, v in by_tool.items() if v}
        for scenario, by_tool in bench.samples.items()
    }
    floors = {f: stats.get(f, {}).get("floor") for f in FLOORS}
    floor_of = {"up-fresh": "floor", "up-fresh-1s": "floor", "up-volumes": "floor-volumes"}
    lines = [
        f"{'scenario':<48} {'devstack med/min/max (s)':>23}   {'compose med/min/max (s)':>23}"
        f"   {'ds/compose':>10}   {'floor med (s)':>13}",
    ]
    lines.append("-" * len(lines[0]))
    for scenario in TABLE_ORDER:
        if scenario not in stats:
            continue
        ds = stats[scenario].get("devstack")
        cp = stats[scenario].get("compose")
        if scenario == "up-fresh-1s":
            ds = stats.get("up-fresh", {}).get("devstack")  # devstack at seed settings
        ratio = f"{ds['median'] / cp['median']:10.2f}" if ds and cp else f"{'-':>10}"
        floor = floors.get(floor_of.get(scenario, ""))
        floor_text = f"{floor['median']:13.3f}" if floor else ""
        lines.append(f"{SCENARIOS[scenario][0]:<48} {fmt(ds)}   {fmt(cp)}   {ratio}   {floor_text}")
    for variant, runs in bench.floors.items():
        lines.append("")
        lines.append(f"{SCENARIOS[variant][0]}, s from the first docker-py call (med/min/max):")
        for key in ("postgres", "redis", "api_start_call", "api_after_start", "api"):
            values = [f[key] for f in runs if key in f]
            if values:
                lines.append(f"  {key:<16} {fmt(summary(values))}")
    return "\n".join(lines)


def targets(bench: Bench) -> list[dict[str, Any]]:
    def med(scenario: str, tool: str) -> float | None:
        values = bench.samples.get(scenario, {}).get(tool)
        return statistics.median(values) if values else None

    up = med("up-fresh", "devstack")
    floor = med("floor", "floor")
    compose_up = med("up-fresh", "compose")
    compose_up_1s = med("up-fresh-1s", "compose")
    checks: list[tuple[str, float | None, float | None, str]] = [
        # name, measured, limit, what the limit means
        ("up from nothing <= 1.3x floor", up, floor * 1.3 if floor else None, "<="),
        (
            "up from nothing >= 7x faster than compose (seed settings)",
            up,
            compose_up / 7 if compose_up else None,
            "<=",
        ),
        ("up from nothing faster than compose with 1s interval", up, compose_up_1s, "<"),
        ("up with existing volumes <= 1.3s", med("up-volumes", "devstack"), 1.3, "<="),
        ("no-op up <= 0.45s", med("up-noop", "devstack"), 0.45, "<="),
        ("status <= 0.30s", med("status", "devstack"), 0.30, "<="),
        (
            "down <= 0.8x compose's",
            med("down", "devstack"),
            (med("down", "compose") or 0) * 0.8 or None,
            "<=",
        ),
    ]
    results = []
    for name, measured, limit, op in checks:
        if measured is None or limit is None:
            verdict = "n/a"
        elif op == "<":
            verdict = "PASS" if measured < limit else "FAIL"
        else:
            verdict = "PASS" if measured <= limit else "FAIL"
        results.append({"target": name, "measured": measured, "limit": limit, "verdict": verdict})
    return results


def targets_text(results: list[dict[str, Any]]) -> str:
    lines = ["targets (devstack medians):"]
    for r in results:
        measured = f"{r['measured']:.3f}s" if r["measured"] is not None else "-"
        limit = f"{r['limit']:.3f}s" if r["limit"] is not None else "-"
        lines.append(f"  {r['verdict']:<4}  {r['target']:<58} {measured:>9}  (limit {limit})")
    return "\n".join(lines)


def tool_versions() -> dict[str, str]:
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
    try:
        done = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


@contextlib.contextmanager
def load_watch() -> Iterator[dict[str, Any]]:
    """Load averages and other projects' running containers before and after (noise hints)."""
    info: dict[str, Any] = {"loadavg_before": os.getloadavg(), "cpus": os.cpu_count()}
    yield info
    info["loadavg_after"] = os.getloadavg()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
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
    args = parser.parse_args(argv)
    wanted = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = sorted(set(wanted) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenarios {unknown}; choose from {ORDER}")
    args.scenarios = [s for s in ORDER if s in wanted]
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
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
    bench = Bench(args.runs, tools, args.scenarios, client)
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
                "interrupted": interrupted,
                "duration_s": round(time.perf_counter() - started, 1),
                "host": {
                    "platform": platform.platform(),
                    **machine,
                    **versions,
                    "git_commit_end": tool_versions()["git_commit"],
                    "devstack_dirty": git_dirty(),
                },
                "images": {**bench.settings, "api_reference": bench.reference_image},
                "projects": {t.name: t.project for t in bench.tool_objs.values()},
                "samples": bench.samples,
                "summary": {
                    s: {t: summary(v) for t, v in by.items() if v}
                    for s, by in bench.samples.items()
                },
                "floor": bench.floors,
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
