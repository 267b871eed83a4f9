"""Benchmark devstack against Docker Compose v2 on the same images, in one run.

    python bench/run.py --runs 5
    python bench/run.py --runs 1 --only devstack --scenarios up-noop,status,floor

The stack comes from the project's declaration, through `devstack.usecases.load_project`: the
bench names no service. Each tool gets its own project name and free host ports (one per port
setting the declaration publishes) and works on its own temporary copy of the build inputs, so
the real tree is never modified. Only what the benchmark created is removed afterwards. Beside
the tools, the *readiness floor* is measured: the declared stack brought up by devstack's own
plan and executor with nothing to build, polled every 20 ms.

Raw numbers go to bench/results/<timestamp>.json (gitignored); a table and the targets are
printed at the end. See bench/README.md. This module is the entry point (options, the JSON);
the rest lives beside it: common (shared helpers), tools (devstack's and Compose's commands),
scenarios, floor, harness (one run) and report (table and targets).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

# The devstack (and bench package) of this checkout, as `python -m devstack` (run from the
# checkout) uses it.
REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import docker  # noqa: E402
import docker.errors  # noqa: E402

from bench.common import (  # noqa: E402
    RESULTS,
    SCRUBBED_PREFIXES,
    TOOLS,
    BenchError,
    CommandFailed,
    log,
    summary,
)
from bench.harness import Bench  # noqa: E402
from bench.report import table, targets, targets_text  # noqa: E402
from bench.scenarios import ORDER, SCENARIOS, UNRELATED_DIR, UNRELATED_FILES  # noqa: E402
from devstack.errors import DevstackError  # noqa: E402


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
                    "devserver_in_tree": (
                        REPO / "devstack" / "programs" / "devserver.py"
                    ).is_file(),
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
