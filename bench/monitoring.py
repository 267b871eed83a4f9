"""The cost of the monitoring group (issue 20): `up` from nothing with and without it, and the
API's throughput and latency with and without its /metrics instrumentation.

    python bench/monitoring.py --runs 3 --seconds 5 --json bench/results/monitoring-<ts>.json

Brings up its own project (`dsmon-<pid>`, free ports, an env file in a temp dir) from this
repository's stack and removes it at the end (`down --volumes`). Everything is compared within
the one run, alternating the two sides (the order reverses each run):

- `up` from nothing (no container, no volume; the images are built) without the group, and
  with `--with monitoring` (Prometheus, the two exporters; Grafana is skipped where its image
  cannot be pulled);
- the API under load from this machine (threads, keep-alive connections) on `/api/v1/live`
  (no I/O) and `/api/v1/ready` (a Postgres and a Redis round trip), with
  `AI_AGENTS_METRICS=true` and `=false` (the service then installs no middleware and serves
  no /metrics; `up` recreates the API for the switch).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: the bench package of this checkout
    sys.path.insert(0, str(REPO))

from bench.common import INHERITED, free_ports, scrubbed_env  # noqa: E402

PATHS = ("/api/v1/live", "/api/v1/ready")


class Project:
    """The bench's own project: its env file and the devstack command line."""

    def __init__(self, work: Path) -> None:
        from devstack.declare.envfile import read_env_file

        inherited = read_env_file(REPO / ".env") if (REPO / ".env").exists() else {}
        self.values = {k: v for k, v in inherited.items() if INHERITED.fullmatch(k) and v}
        postgres, redis, self.api_port, prometheus, grafana = free_ports(5)
        self.values.update(
            DEVSTACK_PROJECT=f"dsmon-{os.getpid()}",
            DEVSTACK_POSTGRES_PORT=str(postgres),
            DEVSTACK_REDIS_PORT=str(redis),
            DEVSTACK_API_PORT=str(self.api_port),
            DEVSTACK_PROMETHEUS_PORT=str(prometheus),
            DEVSTACK_GRAFANA_PORT=str(grafana),
            POSTGRES_PASSWORD=secrets.token_hex(8),
            GRAFANA_ADMIN_PASSWORD=secrets.token_hex(8),
        )
        self.env_file = work / ".env"
        self.env = scrubbed_env(PYTHONPATH=str(REPO))  # as users run: bytecode cached
        self.write()

    def write(self, **extra: str) -> None:
        values = {**self.values, **extra}
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))

    def devstack(self, *args: str) -> float:
        """Run a devstack command; its wall time. Raises with its output if it fails."""
        command = [sys.executable, "-m", "devstack", "--project-dir", str(REPO)]
        command += ["--env-file", str(self.env_file), *args]
        start = time.perf_counter()
        result = subprocess.run(command, env=self.env, capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        if result.returncode != 0:
            raise SystemExit(f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return elapsed


def load(port: int, path: str, seconds: float, threads: int) -> dict[str, float]:
    """`threads` keep-alive clients on `path` for `seconds`: req/s, p50 and p95 (ms)."""
    latencies: list[list[float]] = [[] for _ in range(threads)]
    errors: list[str] = []
    start = time.perf_counter()
    deadline = start + seconds

    def client(samples: list[float]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            while time.perf_counter() < deadline:
                began = time.perf_counter()
                conn.request("GET", path)
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    errors.append(f"{path}: HTTP {response.status}")
                    return
                samples.append(time.perf_counter() - began)
        finally:
            conn.close()

    workers = [threading.Thread(target=client, args=(s,)) for s in latencies]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if errors:
        raise SystemExit(errors[0])
    every = sorted(x for samples in latencies for x in samples)
    elapsed = time.perf_counter() - start
    return {
        "rps": len(every) / elapsed,
        "p50_ms": 1000 * every[len(every) // 2],
        "p95_ms": 1000 * every[int(len(every) * 0.95)],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0, help="per load measurement")
    parser.add_argument("--threads", type=int, default=8, help="concurrent load clients")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="dsmon-"))
    project = Project(work)
    ups: dict[str, list[float]] = {"up": [], "up --with monitoring": []}
    loads: dict[str, list[dict[str, float]]] = {}
    try:
        for run in range(args.runs):  # `up` from nothing, alternating
            sides = list(ups) if run % 2 == 0 else list(reversed(ups))
            for side in sides:
                project.devstack("down", "--volumes")
                ups[side].append(project.devstack(*side.split(), "--quiet"))
        project.devstack("up", "--quiet")  # the group off again
        for run in range(args.runs):  # the instrumentation, alternating
            for metrics in ("true", "false") if run % 2 == 0 else ("false", "true"):
                project.write(AI_AGENTS_METRICS=metrics)
                project.devstack("up", "--quiet")
                load(project.api_port, PATHS[0], 1.0, args.threads)  # warm-up
                for path in PATHS:
                    key = f"{path} metrics={metrics}"
                    loads.setdefault(key, []).append(
                        load(project.api_port, path, args.seconds, args.threads)
                    )
    finally:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "devstack",
                "--project-dir",
                str(REPO),
                "--env-file",
                str(project.env_file),
                "down",
                "--volumes",
            ],
            env=project.env,
            capture_output=True,
        )
        shutil.rmtree(work, ignore_errors=True)
    report = summary(ups, loads)
    print(report["text"])
    if args.json:
        document = {"runs": args.runs, "seconds": args.seconds, "threads": args.threads}
        document |= {"loadavg": os.getloadavg(), "up": ups, "load": loads}
        args.json.write_text(json.dumps(document | report["numbers"], indent=2) + "\n")
    return 0


def summary(
    ups: dict[str, list[float]], loads: dict[str, list[dict[str, float]]]
) -> dict[str, Any]:
    """The table and the ratios (medians)."""
    lines = ["| what | median (min-max) |", "|---|---|"]
    numbers: dict[str, float] = {}
    for side, times in ups.items():
        lines.append(
            f"| `{side}` from nothing, s | {statistics.median(times):.2f} "
            f"({min(times):.2f}-{max(times):.2f}) |"
        )
    up_ratio = statistics.median(ups["up --with monitoring"]) / statistics.median(ups["up"])
    numbers["up_ratio"] = round(up_ratio, 3)
    lines.append(f"| `up --with monitoring` / `up` | {up_ratio:.2f}x |")
    for path in PATHS:
        rates = {}
        for metrics in ("true", "false"):
            samples = loads[f"{path} metrics={metrics}"]
            rps = [s["rps"] for s in samples]
            p50 = statistics.median(s["p50_ms"] for s in samples)
            p95 = statistics.median(s["p95_ms"] for s in samples)
            rates[metrics] = statistics.median(rps)
            lines.append(
                f"| {path}, metrics {'on' if metrics == 'true' else 'off'}: req/s, p50, p95 | "
                f"{rates[metrics]:.0f} ({min(rps):.0f}-{max(rps):.0f}), {p50:.1f} ms, "
                f"{p95:.1f} ms |"
            )
        overhead = 100 * (1 - rates["true"] / rates["false"])
        numbers[f"{path} overhead_pct"] = round(overhead, 1)
        lines.append(f"| {path}: throughput lost to the instrumentation | {overhead:.1f} % |")
    return {"text": "\n".join(lines), "numbers": numbers}


if __name__ == "__main__":
    sys.exit(main())
