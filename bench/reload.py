"""Hot reload: latency from saving a file to the new response, devserver vs `uvicorn --reload`.

    python bench/reload.py                       # host, 10 edits per reloader
    python bench/reload.py --where host,docker   # also inside the API image (builds it)
    python bench/reload.py --edits 20 --where docker --image h-reload-api --keep-image

Both reloaders serve the real `service` package (from their own temporary copy of service/)
at the same time, on their own free ports; the edits alternate between them (which goes first
alternates too), so load from elsewhere hits both alike. An edit renames a new
`service/routes/meta.py` over the old one (as editors save) with a new SERVICE_NAME, then
`GET /` is polled every 5 ms (requests queue on the listening socket during a reload) until
the new name comes back. The reloaders' log lines are timestamped as they arrive, which gives
the breakdown: change seen, old server finished, new server imported the app ("Started
server process"), lifespan done ("Application startup complete"), first new response.
Postgres and Redis are not needed: the service's pool and client are lazy.

`--where docker` builds the API image from /work/main's Dockerfile (falls back to this
checkout's) with the local stand-in Python image (DEVSTACK_PYTHON_IMAGE from .env), then runs
each reloader in a container with its service/ copy and devstack/programs/devserver.py bind-mounted
read-only, as devstack's dev mode does. Everything it made is removed at the end (containers
by the label devstack.bench=reload-<id>, the image unless --keep-image or it existed before).

Raw samples go to bench/results/reload-<timestamp>.json (gitignored).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import io
import json
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, cast

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
DEVSERVER = REPO / "devstack" / "programs" / "devserver.py"
MAIN_CHECKOUT = Path("/work/main")
EDITED = "service/routes/meta.py"
NAME_LINE = re.compile(r'^SERVICE_NAME = ".*"$', re.MULTILINE)
TARGET_RATIO = 0.5
POLL_INTERVAL = 0.005
RELOADERS = ("devserver", "uvicorn")
# Log lines that mark the phases of a reload (the same for both: uvicorn logs them).
MARKS = {
    "seen": re.compile(r"WatchFiles detected changes|devserver: .* changed"),
    "old_finished": re.compile(r"Finished server process"),
    "imported": re.compile(r"Started server process"),
    "started": re.compile(r"Application startup complete"),
}
SERVICE_ENV = {
    # Unreachable on purpose: the pool and the Redis client are lazy, / needs neither.
    "AI_AGENTS_DATABASE_URL": "postgresql://bench:bench@127.0.0.1:9/bench",
    "AI_AGENTS_REDIS_URL": "redis://127.0.0.1:9/0",
    "AI_AGENTS_CELERY_BROKER_URL": "redis://127.0.0.1:9/1",
    "AI_AGENTS_LOG_LEVEL": "info",
    "AI_AGENTS_ENVIRONMENT": "development",
}


def log(message: str) -> None:
    print(f"[reload-bench] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def read_env(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            key, sep, value = line.strip().partition("=")
            if sep and not key.startswith("#"):
                values[key.strip()] = value.strip()
    return values


@dataclass
class LogTap:
    """Lines of a reloader's output, each with the monotonic time it arrived."""

    lines: list[tuple[float, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def feed(self, chunks: Iterable[bytes]) -> None:
        rest = b""
        for chunk in chunks:
            now = time.monotonic()
            *complete, rest = (rest + chunk).split(b"\n")
            with self.lock:
                self.lines.extend((now, c.decode(errors="replace")) for c in complete)

    def since(self, start: float) -> list[tuple[float, str]]:
        with self.lock:
            return [(t, line) for t, line in self.lines if t >= start]

    def text(self) -> str:
        with self.lock:
            return "\n".join(line for _, line in self.lines)


@dataclass
class Reloader:
    """One running reloader: where it serves, its tree, its log, how to stop it."""

    name: str
    tree: Path
    port: int
    tap: LogTap
    stop: Callable[[], int | None]
    samples: list[dict[str, Any]] = field(default_factory=list)

    def get_name(self, timeout: float = 30.0) -> str | None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("GET", "/", headers={"Connection": "close"})
            response = conn.getresponse()
            body = response.read()
            if response.status != 200:
                return None
            name: str = json.loads(body)["name"]
            return name
        except (OSError, http.client.HTTPException, ValueError, KeyError):
            return None
        finally:
            conn.close()

    def wait_for(self, wanted: str | None, timeout: float) -> float:
        """Poll GET / until it names ``wanted`` (any 200 if None); the time it did."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            name = self.get_name(timeout=max(0.1, deadline - time.monotonic()))
            if name is not None and (wanted is None or name == wanted):
                return time.monotonic()
            time.sleep(POLL_INTERVAL)
        raise TimeoutError(
            f"{self.name}: no {wanted or 'answer'} in {timeout} s:\n{self.tap.text()}"
        )

    def edit(self, label: str) -> dict[str, Any]:
        """Save a new SERVICE_NAME; time until the response carries it, with the phases."""
        path = self.tree / EDITED
        source = NAME_LINE.sub(f'SERVICE_NAME = "{label}"', path.read_text())
        tmp = path.with_name(f".{path.name}.bench")
        tmp.write_text(source)
        tmp.chmod(0o644)
        saved = time.monotonic()
        os.replace(tmp, path)
        answered = self.wait_for(label, timeout=60.0)
        sample: dict[str, Any] = {"latency": answered - saved}
        for mark, pattern in MARKS.items():
            hits = [t for t, line in self.tap.since(saved) if pattern.search(line)]
            sample[mark] = hits[0] - saved if hits else None
        return sample


def phases(sample: dict[str, Any]) -> dict[str, float | None]:
    """Durations between consecutive marks (None where a mark is missing)."""
    points = ["seen", "old_finished", "imported", "started"]
    out: dict[str, float | None] = {}
    previous: float | None = 0.0
    names = {
        "seen": "detect",
        "old_finished": "stop_old",
        "imported": "spawn_import",
        "started": "lifespan",
    }
    for point in points:
        value = sample.get(point)
        out[names[point]] = None if value is None or previous is None else value - previous
        previous = value
    out["first_response"] = None if previous is None else sample["latency"] - previous
    return out


def copy_tree(root: Path) -> Path:
    """A world-readable copy of service/ under ``root`` (the container runs as uid 10001)."""
    shutil.copytree(
        REPO / "service", root / "service", ignore=shutil.ignore_patterns("__pycache__")
    )
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return root


# -- host ------------------------------------------------------------------------------------


@contextlib.contextmanager
def host_reloaders(base: Path) -> Iterator[list[Reloader]]:
    env = dict(os.environ, **SERVICE_ENV, PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTHONPATH", None)  # each serves its own copy of service/
    procs: list[subprocess.Popen[bytes]] = []
    reloaders: list[Reloader] = []
    try:
        for name in RELOADERS:
            tree = copy_tree(base / name)
            port = free_port()
            if name == "devserver":
                command = [
                    sys.executable,
                    str(DEVSERVER),
                    "service.main:app",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--watch",
                    str(tree / "service"),
                    "--error-file",
                    str(base / f"{name}-code-error"),
                ]
            else:
                command = [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "service.main:app",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--reload",
                    "--reload-dir",
                    str(tree / "service"),
                ]
            proc = subprocess.Popen(
                command,
                cwd=tree,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
            procs.append(proc)
            tap = LogTap()
            assert proc.stdout is not None
            stream = cast(io.BufferedReader, proc.stdout)  # a pipe in binary mode
            threading.Thread(
                target=tap.feed, args=(iter(partial(stream.read1, 65536), b""),), daemon=True
            ).start()

            def stop(proc: subprocess.Popen[bytes] = proc) -> int | None:
                proc.send_signal(signal.SIGTERM)
                try:
                    return proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    return proc.wait()

            reloaders.append(Reloader(name, tree, port, tap, stop))
        yield reloaders
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


# -- docker ----------------------------------------------------------------------------------


def ensure_image(client: Any, image: str, python_image: str, ca_bundle: str | None) -> bool:
    """Build ``image`` from the Dockerfile if missing; True if this run built it."""
    import docker.errors

    try:
        client.images.get(image)
        log(f"image {image} exists: reused")
        return False
    except docker.errors.ImageNotFound:
        pass
    dockerfile = MAIN_CHECKOUT / "Dockerfile"
    if not dockerfile.is_file():
        dockerfile = REPO / "Dockerfile"
    with tempfile.TemporaryDirectory(prefix="reload-bench-ctx-") as ctx_dir:
        ctx = Path(ctx_dir)
        shutil.copy(dockerfile, ctx / "Dockerfile")
        shutil.copy(REPO / ".dockerignore", ctx / ".dockerignore")
        shutil.copy(REPO / "pyproject.toml", ctx / "pyproject.toml")
        shutil.copytree(REPO / "certs", ctx / "certs", ignore=shutil.ignore_patterns("*.pem"))
        for name in ("service", "alembic", "image-build"):
            shutil.copytree(REPO / name, ctx / name, ignore=shutil.ignore_patterns("__pycache__"))
        if ca_bundle and Path(ca_bundle).is_file():
            shutil.copy(ca_bundle, ctx / "certs" / "devstack-ca-bundle.pem")
        log(f"building {image} from {dockerfile} (PYTHON_IMAGE={python_image})")
        started = time.monotonic()
        for chunk in client.api.build(
            path=str(ctx),
            tag=image,
            target="runtime",
            buildargs={"PYTHON_IMAGE": python_image},
            rm=True,
            decode=True,
            labels={"devstack.bench": "reload"},
        ):
            if "error" in chunk:
                raise RuntimeError(f"build failed: {chunk['error']}")
        log(f"built {image} in {time.monotonic() - started:.0f} s")
    return True


@contextlib.contextmanager
def docker_reloaders(client: Any, base: Path, image: str, run_id: str) -> Iterator[list[Reloader]]:
    label = {"devstack.bench": f"reload-{run_id}"}
    containers: list[Any] = []
    reloaders: list[Reloader] = []
    try:
        for name in RELOADERS:
            tree = copy_tree(base / name)
            port = free_port()
            if name == "devserver":
                command = [
                    "python",
                    "/opt/devstack/devserver.py",
                    "service.main:app",
                    "--host",
                    "0.0.0.0",
                    "--port",
                    "8000",
                    "--watch",
                    "/app/service",
                    "--error-file",
                    "/tmp/devstack-code-error",
                ]
            else:
                command = [
                    "uvicorn",
                    "service.main:app",
                    "--host",
                    "0.0.0.0",
                    "--port",
                    "8000",
                    "--reload",
                    "--reload-dir",
                    "/app/service",
                ]
            container = client.containers.run(
                image,
                command=command,
                name=f"reload-bench-{run_id}-{name}",
                detach=True,
                labels=label,
                environment=SERVICE_ENV,
                ports={"8000/tcp": ("127.0.0.1", port)},
                volumes={
                    str(tree / "service"): {"bind": "/app/service", "mode": "ro"},
                    str(DEVSERVER): {"bind": "/opt/devstack/devserver.py", "mode": "ro"},
                },
            )
            containers.append(container)
            tap = LogTap()
            stream = container.logs(stream=True, follow=True)
            threading.Thread(target=tap.feed, args=(stream,), daemon=True).start()

            def stop(container: Any = container) -> int | None:
                container.stop(timeout=15)
                code: int | None = container.wait(timeout=20).get("StatusCode")
                return code

            reloaders.append(Reloader(name, tree, port, tap, stop))
        yield reloaders
    finally:
        for container in client.containers.list(
            all=True, filters={"label": [f"devstack.bench=reload-{run_id}"]}
        ):
            container.remove(force=True, v=True)


# -- the run ---------------------------------------------------------------------------------


def measure(reloaders: list[Reloader], edits: int, where: str) -> dict[str, Any]:
    for reloader in reloaders:
        reloader.wait_for(None, timeout=120.0)
        log(f"{where}/{reloader.name}: serving on port {reloader.port}")
    devserver = next(r for r in reloaders if r.name == "devserver")
    deadline = time.monotonic() + 60
    while "preloaded" not in devserver.tap.text() and time.monotonic() < deadline:
        time.sleep(0.05)
    for reloader in reloaders:  # warm-up edit, not counted
        reloader.edit(f"warm-{reloader.name}")
        time.sleep(0.5)
    for index in range(edits):
        order = reloaders if index % 2 == 0 else list(reversed(reloaders))
        for reloader in order:
            sample = reloader.edit(f"edit-{index}-{reloader.name}")
            reloader.samples.append(sample)
            took = sample["latency"] * 1000
            log(f"{where}/{reloader.name} edit {index + 1}/{edits}: {took:.0f} ms")
            time.sleep(0.5)  # let the reloader settle (bench only)
    exit_codes = {r.name: r.stop() for r in reloaders}
    out: dict[str, Any] = {"exit_codes": exit_codes}
    for reloader in reloaders:
        latencies = [s["latency"] for s in reloader.samples]
        phase_list = [phases(s) for s in reloader.samples]
        out[reloader.name] = {
            "median": statistics.median(latencies),
            "min": min(latencies),
            "max": max(latencies),
            "samples": reloader.samples,
            "phases_median": {
                key: _median([p[key] for p in phase_list])
                for key in ("detect", "stop_old", "spawn_import", "lifespan", "first_response")
            },
        }
    ratio = out["devserver"]["median"] / out["uvicorn"]["median"]
    out["ratio"] = ratio
    out["verdict"] = "PASS" if ratio <= TARGET_RATIO else "FAIL"
    return out


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def report(where: str, result: dict[str, Any]) -> str:
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value * 1000:.0f}"

    lines = [
        f"## {where}",
        "| reloader | median ms | min | max | detect | stop old | spawn+import | lifespan "
        "| first response |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in RELOADERS:
        r = result[name]
        p = r["phases_median"]
        lines.append(
            f"| {name} | {ms(r['median'])} | {ms(r['min'])} | {ms(r['max'])} | {ms(p['detect'])} "
            f"| {ms(p['stop_old'])} | {ms(p['spawn_import'])} | {ms(p['lifespan'])} "
            f"| {ms(p['first_response'])} |"
        )
    lines.append(
        f"ratio devserver/uvicorn = {result['ratio']:.3f} (target <= {TARGET_RATIO}): "
        f"{result['verdict']}; exit codes {result['exit_codes']}"
    )
    return "\n".join(lines)


def versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for module in ("uvicorn", "watchfiles", "fastapi"):
        try:
            out[module] = __import__(module).__version__
        except Exception:  # not installed on the host
            out[module] = "?"
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--edits", type=int, default=10, help="measured edits per reloader")
    parser.add_argument("--where", default="host", help="host, docker or host,docker")
    parser.add_argument("--image", default="h-reload-api", help="API image for --where docker")
    parser.add_argument("--keep-image", action="store_true", help="keep an image this run built")
    args = parser.parse_args(argv)
    wheres = [w.strip() for w in args.where.split(",") if w.strip()]
    run_id = secrets.token_hex(3)
    results: dict[str, Any] = {
        "started": datetime.now().isoformat(timespec="seconds"),
        "edits": args.edits,
        "host_versions": versions(),
        "load_before": os.getloadavg(),
    }
    texts = []
    with tempfile.TemporaryDirectory(prefix="reload-bench-") as tmp:
        base = Path(tmp)
        base.chmod(0o755)
        if "host" in wheres:
            with host_reloaders(base / "host") as reloaders:
                results["host"] = measure(reloaders, args.edits, "host")
            texts.append(report("host", results["host"]))
        if "docker" in wheres:
            import docker

            client = docker.from_env()
            env = {**read_env(MAIN_CHECKOUT / ".env"), **read_env(REPO / ".env")}
            python_image = env.get("DEVSTACK_PYTHON_IMAGE", "python:3.12-slim")
            built = ensure_image(client, args.image, python_image, env.get("DEVSTACK_CA_BUNDLE"))
            try:
                (base / "docker").mkdir(mode=0o755)
                with docker_reloaders(client, base / "docker", args.image, run_id) as reloaders:
                    results["docker"] = measure(reloaders, args.edits, "docker")
                    results["docker"]["image"] = args.image
                    results["docker"]["python_image"] = python_image
                texts.append(report(f"docker ({args.image}, {python_image})", results["docker"]))
            finally:
                if built and not args.keep_image:
                    client.images.remove(args.image, force=True)
                    log(f"removed image {args.image}")
    results["load_after"] = os.getloadavg()
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"reload-{datetime.now():%Y%m%d-%H%M%S}.json"
    out.write_text(json.dumps(results, indent=2))
    print("\n\n".join(texts))
    print(f"\nraw samples: {out.relative_to(REPO)}")
    return 0 if all(results[w]["verdict"] == "PASS" for w in wheres if w in results) else 1


if __name__ == "__main__":
    sys.exit(main())
