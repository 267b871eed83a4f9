"""What every part of the benchmark shares: the paths, its own errors, progress lines, and
small helpers to run a timed command, pick ports, write files, poll over HTTP and remove what
the run created."""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import docker
import docker.errors

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
COMPOSE_FILE = BENCH / "compose.yaml"
RESULTS = BENCH / "results"
TOOLS = ("devstack", "compose")
COMMAND_TIMEOUT = 600.0
# Settings inherited from the repo's .env (which images, which CA bundle); the rest is ours.
# .env.example supplies them when there is no .env (it names the local stand-in images).
INHERITED = re.compile(r"DEVSTACK_\w+_IMAGE|DEVSTACK_CA_BUNDLE")
# Environment variables that would override the settings we pass (devstack: the environment
# wins over --env-file; compose: the file and project come from the command line).
SCRUBBED_PREFIXES = ("DEVSTACK_", "POSTGRES_", "AI_AGENTS_", "COMPOSE_")
# A user's interpreter caches bytecode (pip compiles it at install): a caller's "never write
# bytecode" would make every devstack command recompile devstack's modules (~0.15 s here).
SCRUBBED_VARIABLES = frozenset({"PYTHONDONTWRITEBYTECODE"})


class CommandFailed(Exception):
    """A measured or preparing command exited non-zero."""


class BenchError(Exception):
    """The benchmark cannot do what a scenario needs (e.g. the declaration lacks it)."""


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
