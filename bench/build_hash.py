"""Time devstack's build hash (what `up` and `up --plan` pay before talking to the engine) on a
temporary copy of the build inputs: clean, and with an unrelated tree of many small files
(a frontend's node_modules, not in .dockerignore); with a cold digest cache (none) and a
warm one; for the repo's Dockerfile and for a whole-context one (`COPY . /app`, the fallback).

    python bench/build_hash.py --runs 7 --files 20000

Prints one line per case (median and min of the runs, files hashed, files read) and writes
nothing outside the temporary directory.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from devstack.converge.build import DIGEST_CACHE, DigestCache, build_hash, build_inputs  # noqa: E402
from devstack.converge.buildinputs import CACHE_DIR  # noqa: E402
from devstack.declare.spec import Build  # noqa: E402

COPIED = ("Dockerfile", ".dockerignore", "pyproject.toml", "certs", "service")


def copy_inputs(target: Path, whole_context: bool) -> None:
    target.mkdir(parents=True)
    for name in COPIED:
        source = REPO / name
        if source.is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pem")
            shutil.copytree(source, target / name, ignore=ignore)
        else:
            shutil.copy2(source, target / name)
    if whole_context:
        dockerfile = target / "Dockerfile"
        dockerfile.write_text(dockerfile.read_text() + "COPY . /app/\n")


def add_tree(root: Path, count: int) -> None:
    for index in range(count):
        package = root / "frontend" / "node_modules" / f"pkg{index // 100}"
        if index % 100 == 0:
            package.mkdir(parents=True)
        (package / f"f{index % 100}.js").write_text(f"module.exports = {index};\n")


def age(root: Path, seconds: float = 60.0) -> None:
    """Files as a checkout has them: older than the cache's racy window."""
    past = time.time() - seconds
    for directory, _, files in os.walk(root):
        for name in files:
            os.utime(Path(directory) / name, (past, past))


def measure(build: Build, runs: int, cold: bool) -> tuple[list[float], int]:
    cache_file = build.context / CACHE_DIR / DIGEST_CACHE
    times: list[float] = []
    reads = 0
    build_hash(build)  # warms the page cache (and the digest cache)
    for _ in range(runs):
        if cold:
            cache_file.unlink(missing_ok=True)
        cache = DigestCache(cache_file)
        started = time.perf_counter()
        build_hash(build, cache)
        times.append(time.perf_counter() - started)
        reads = cache.reads
    return times, reads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--files", type=int, default=20_000)
    args = parser.parse_args()
    print(f"{'dockerfile':<14} {'tree':<14} {'cache':<5} {'median':>9} {'min':>9} inputs read")
    with tempfile.TemporaryDirectory(prefix="devstack-bench-hash-") as scratch:
        for whole in (False, True):
            for extra in (0, args.files):
                root = Path(scratch) / f"w{int(whole)}-{extra}"
                copy_inputs(root, whole)
                add_tree(root, extra)
                age(root)
                build = Build(context=root, args=(("PYTHON_IMAGE", "python:3.12"),))
                inputs = len(build_inputs(build).files)
                for cold in (True, False):
                    times, reads = measure(build, args.runs, cold)
                    print(
                        f"{'COPY . /app/' if whole else 'repo':<14} "
                        f"{f'+{extra} files' if extra else 'clean':<14} "
                        f"{'cold' if cold else 'warm':<5} "
                        f"{statistics.median(times) * 1000:>7.1f}ms {min(times) * 1000:>7.1f}ms "
                        f"{inputs:>6} {reads:>4}"
                    )


if __name__ == "__main__":
    main()
