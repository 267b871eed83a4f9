"""Benchmark the devstack pytest plugin and `db snapshot/restore` (issue 13).

    python bench/pytest_plugin.py --tests 200 --runs 3

Brings up its own isolated project (name `dsbench-<pid>`, free ports, an env file in a temp
dir), then times, each `--runs` times, the same generated suite of N small database tests
(connect, insert a row into the migrated `task_records`, count) under `pytest -n 2`:

- plugin, worker DB   the plugin on the running stack: one clone of the template per worker
- plugin, per-test DB the plugin's `devstack_fresh_dsn`: a clone for every test
- container/session   the testcontainers way: each xdist worker starts its own Postgres
                      container, waits for it, runs `python -m service.migrate` against it,
                      and removes it at the end

and the time of `db snapshot` and `db restore` on a database grown to ~`--mb` MB. Removes what
it created (by its project label and its own container names). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

CONFTEST_CONTAINER = """
import asyncio, os, secrets, subprocess, sys, time
import asyncpg, docker, pytest

async def _ping(url):
    conn = await asyncpg.connect(url, timeout=2)
    await conn.close()

@pytest.fixture(scope="session")
def dsn():
    client = docker.from_env()
    name = f"dsbench-tc-{os.getpid()}-{secrets.token_hex(2)}"
    c = client.containers.run(
        os.environ["BENCH_PG_IMAGE"], name=name, detach=True,
        environment={"POSTGRES_PASSWORD": "pw", "POSTGRES_USER": "u", "POSTGRES_DB": "d"},
        ports={"5432/tcp": ("127.0.0.1", None)},
    )
    try:
        c.reload()
        port = c.ports["5432/tcp"][0]["HostPort"]
        url = f"postgresql://u:pw@127.0.0.1:{port}/d"
        deadline = time.monotonic() + 120
        while True:
            try:
                asyncio.run(_ping(url))
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        env = {**os.environ, "AI_AGENTS_DATABASE_URL": url, "ALEMBIC_CONFIG": "alembic/alembic.ini"}
        subprocess.run([sys.executable, "-m", "service.migrate"], cwd=os.environ["BENCH_REPO"],
                       env=env, check=True, capture_output=True)
        yield url
    finally:
        c.remove(force=True, v=True)
"""

TEST = """
import asyncio, uuid, asyncpg

def _work(dsn):
    async def go():
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(
                "INSERT INTO task_records (id, message, worker) VALUES ($1, 'm', 'w')", uuid.uuid4()
            )
            return await conn.fetchval("SELECT count(*) FROM task_records")
        finally:
            await conn.close()
    return asyncio.run(go())
"""


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_suite(base: Path, n: int, fixture: str, conftest: str = "") -> Path:
    """A suite of `n` tests using `fixture` as their DSN."""
    base.mkdir(parents=True)
    body = TEST + "".join(
        f"\ndef test_{i}({fixture}):\n    assert _work({fixture}) >= 1\n" for i in range(n)
    )
    (base / "test_many.py").write_text(body)
    (base / "conftest.py").write_text(conftest)
    (base / "pytest.ini").write_text("[pytest]\n")
    return base


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    """Wall time of `command`; raises with its output if it fails."""
    start = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    return elapsed


FLOOR_CONFTEST = """
import os, pytest

@pytest.fixture(scope="session")
def dsn():
    return os.environ["BENCH_FLOOR_DSN"]
"""

# (label, fixture, conftest, pytest -n, how: "plugin" | "plugin-first" | "floor" | "container")
VARIANTS = (
    ("floor: migrated database, no plugin, -n 0", "dsn", FLOOR_CONFTEST, 0, "floor"),
    ("floor: migrated database, no plugin, -n 2", "dsn", FLOOR_CONFTEST, 2, "floor"),
    ("plugin, worker DB, -n 0", "devstack_dsn", "", 0, "plugin"),
    ("plugin, worker DB, -n 2", "devstack_dsn", "", 2, "plugin"),
    ("plugin, first run (builds the template), -n 2", "devstack_dsn", "", 2, "plugin-first"),
    ("plugin, per-test DB, -n 2", "devstack_fresh_dsn", "", 2, "plugin"),
    ("fresh Postgres container per session, -n 2", "dsn", CONFTEST_CONTAINER, 2, "container"),
)

# issue 23's targets: (name, measured label, limit, reference label, absolute slack in s)
TARGETS = (
    ("plugin <= 1.15x the floor, -n 0", VARIANTS[2][0], 1.15, VARIANTS[0][0], 0.0),
    ("plugin <= 1.15x the floor, -n 2", VARIANTS[3][0], 1.15, VARIANTS[1][0], 0.0),
    ("first run <= the floor + 2 s, -n 2", VARIANTS[4][0], 1.0, VARIANTS[1][0], 2.0),
    ("per-test DB <= 2x the worker-DB run, -n 2", VARIANTS[5][0], 2.0, VARIANTS[3][0], 0.0),
)


def verdicts(medians: dict[str, float]) -> list[dict[str, object]]:
    """Each target's numbers and PASS/FAIL from the medians."""
    results: list[dict[str, object]] = []
    for name, measured, limit, reference, slack in TARGETS:
        if measured not in medians or reference not in medians:
            continue
        allowed = medians[reference] * limit + slack
        results.append(
            {
                "target": name,
                "measured": round(medians[measured], 3),
                "reference": round(medians[reference], 3),
                "ratio": round(medians[measured] / medians[reference], 3),
                "allowed": round(allowed, 3),
                "verdict": "PASS" if medians[measured] <= allowed else "FAIL",
            }
        )
    return results


def main() -> int:
    """Run the benchmark, print the table and the targets, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--mb", type=int, default=100, help="snapshot database size (MB); 0: skip")
    parser.add_argument(
        "--only", default="", help="only the variants whose label has this (a|b: either)"
    )
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument(
        "--clone-patterns",
        type=int,
        default=0,
        metavar="N",
        help="also time per-test clone patterns on the server directly (2 workers x N tests)",
    )
    args = parser.parse_args()

    sys.path.insert(0, str(REPO))
    from devstack.declare.envfile import read_env_file

    work = Path(tempfile.mkdtemp(prefix="dsbench-"))
    name = f"dsbench-{os.getpid()}"
    inherited = read_env_file(REPO / ".env")
    values = {
        k: v
        for k, v in inherited.items()
        if k in ("DEVSTACK_POSTGRES_IMAGE", "DEVSTACK_REDIS_IMAGE", "DEVSTACK_PYTHON_IMAGE")
        or k == "DEVSTACK_CA_BUNDLE"
    }
    values.update(
        DEVSTACK_PROJECT=name,
        DEVSTACK_POSTGRES_PORT=str(free_port()),
        DEVSTACK_REDIS_PORT=str(free_port()),
        DEVSTACK_API_PORT=str(free_port()),
        POSTGRES_USER="bench",
        POSTGRES_PASSWORD=secrets.token_hex(8),
        POSTGRES_DB="benchdb",
    )
    env_file = work / ".env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEVSTACK_", "POSTGRES_"))}
    env.update(PYTHONPATH=str(REPO), NO_COLOR="1", BENCH_REPO=str(REPO))
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as users run (bench/common.py: SCRUBBED_...)
    env["BENCH_PG_IMAGE"] = values.get("DEVSTACK_POSTGRES_IMAGE", "postgres:17-alpine")
    devstack = [sys.executable, "-m", "devstack", "--project-dir", str(REPO)]
    devstack += ["--env-file", str(env_file)]
    samples: dict[str, list[float]] = {}
    try:
        subprocess.run([*devstack, "up", "--quiet"], env=env, check=True, capture_output=True)
        settings = _settings(env_file)
        env["BENCH_FLOOR_DSN"] = _floor_database(settings)
        from importlib.metadata import entry_points

        installed = any(ep.name == "devstack" for ep in entry_points(group="pytest11"))
        plugin = ["-p", "devstack" if installed else "devstack.pytest_plugin"]
        plugin += ["--devstack-env-file", str(env_file)]
        chosen = [v for v in VARIANTS if any(o in v[0] for o in args.only.split("|"))]
        for run in range(args.runs):
            for label, fixture, conftest, workers, how in chosen[:: 1 if run % 2 == 0 else -1]:
                suite = work / f"{fixture}-{workers}-{how}"
                if not suite.exists():
                    write_suite(suite, args.tests, fixture, conftest)
                command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
                command += ["-p", "no:randomly", "-n", str(workers)]
                command += ["--rootdir", str(suite), "-c", str(suite / "pytest.ini")]
                if how.startswith("plugin"):
                    command += plugin
                    ini = f"[pytest]\ndevstack = true\ndevstack_project_dir = {REPO}\n"
                    (suite / "pytest.ini").write_text(ini)
                else:
                    command += ["-p", "no:devstack"] if installed else []
                if how == "plugin-first":
                    _drop_templates(settings)
                # the dirty pages the variant before left (a container's initdb and removal)
                # are written first: the fsyncs of this one must not wait for them
                os.sync()
                samples.setdefault(label, []).append(timed(command, suite, env))
        if args.clone_patterns:
            samples.update(clone_pattern_rows(settings, args.clone_patterns, args.runs))
        if args.mb:
            for label, values_ in snapshot_rows(devstack, env, values, args.mb, args.runs):
                samples[label] = values_
    finally:
        subprocess.run([*devstack, "down", "--volumes"], env=env, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    medians = {label: statistics.median(values_) for label, values_ in samples.items()}
    results = verdicts(medians)
    print(f"\n{args.tests} tests, {args.runs} runs (median, min-max), seconds\n")
    print("| what | median | min | max |\n|---|---|---|---|")
    for label, values_ in samples.items():
        print(f"| {label} | {medians[label]:.2f} | {min(values_):.2f} | {max(values_):.2f} |")
    if VARIANTS[3][0] in medians and VARIANTS[6][0] in medians:
        ratio = medians[VARIANTS[3][0]] / medians[VARIANTS[6][0]]
        print(f"\nplugin (worker DB) / a container per session, -n 2: {ratio:.2f}x")
    print("\ntargets (issue 23):")
    for r in results:
        print(
            f"  {r['verdict']:<4} {r['target']:<48} {r['measured']:.2f} s vs "
            f"{r['reference']:.2f} s: {r['ratio']:.2f}x (allowed {r['allowed']:.2f} s)"
        )
    if args.json:
        load = os.getloadavg()
        document = {"tests": args.tests, "runs": args.runs, "loadavg": load, "samples": samples}
        args.json.write_text(json.dumps({**document, "targets": results}, indent=2) + "\n")
    return 0


def _settings(env_file: Path) -> Any:
    from devstack.declare.settings import load_settings

    return load_settings(REPO, env_file)


def _floor_database(settings: Any) -> str:
    """The floor's database: a clone of the migrated template, made once before timing."""
    from devstack.usecases import databases

    return databases.clone(settings, "bench_floor", databases.ensure_template(settings))


def _drop_templates(settings: Any) -> None:
    """Drop the migrated template and the databases made from it ahead, so the next run is
    a first run that builds it."""
    from devstack.usecases import databases, spares

    spares.drop_all(settings)
    databases.drop_templates(settings)


def snapshot_rows(
    devstack: list[str], env: dict[str, str], values: dict[str, str], mb: int, runs: int
) -> list[tuple[str, list[float]]]:
    """Grow the application database to ~`mb` MB, then time `db snapshot` and `db restore`."""
    import asyncpg

    dsn = (
        f"postgresql://{values['POSTGRES_USER']}:{values['POSTGRES_PASSWORD']}"
        f"@127.0.0.1:{values['DEVSTACK_POSTGRES_PORT']}/{values['POSTGRES_DB']}"
    )

    async def grow() -> int:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS filler AS SELECT g AS id, md5(g::text) || "
                f"repeat('x', 900) AS body FROM generate_series(1, {mb * 1000}) g"
            )
            return int(await conn.fetchval("SELECT pg_database_size(current_database())"))
        finally:
            await conn.close()

    size = asyncio.run(grow())
    snap, restore = [], []
    for _ in range(runs):
        snap.append(timed([*devstack, "db", "snapshot", "bench", "--force"], REPO, env))
        restore.append(timed([*devstack, "db", "restore", "bench", "--force"], REPO, env))
    return [
        (f"`db snapshot` of a {size / 1e6:.0f} MB database (CLI, incl. ~0.3 s start)", snap),
        (f"`db restore` of a {size / 1e6:.0f} MB database (CLI, incl. ~0.3 s start)", restore),
    ]


# (label, clones made ahead, STRATEGY, drops after the run instead of after each test)
CLONE_PATTERNS = (
    ("2 ahead, WAL_LOG, drop after each test", 2, "WAL_LOG", False),
    ("2 ahead, FILE_COPY, drop after each test", 2, "FILE_COPY", False),
    ("none ahead, WAL_LOG, create-use-drop in line", 0, "WAL_LOG", False),
    ("2 ahead, WAL_LOG, all drops after the run", 2, "WAL_LOG", True),
    ("2 ahead, FILE_COPY, all drops after the run", 2, "FILE_COPY", True),
)


def clone_pattern_rows(settings: Any, n: int, runs: int) -> dict[str, list[float]]:
    """Per-test clone patterns straight on the server, 2 simulated workers x `n` tests (take a
    clone, connect, insert a row, release), interleaved; the wall time, the part after the
    tests (deferred drops), and the WAL written (MB, as a sample list)."""
    import uuid

    import asyncpg

    from devstack.usecases import databases

    server = databases.Server.of(settings)
    template = databases.ensure_template(settings)
    q = databases.quote_ident

    async def worker(w: int, ahead: int, strategy: str, defer: bool) -> float:
        maker = await asyncpg.connect(server.dsn("postgres"))
        dropper = await asyncpg.connect(server.dsn("postgres"))
        ready: asyncio.Queue[str] = asyncio.Queue()
        room, drop_lock = asyncio.Semaphore(max(ahead, 1)), asyncio.Lock()

        async def make(i: int) -> str:
            name = f"bench_clone_{w}_{i}"
            create = f"CREATE DATABASE {q(name)} TEMPLATE {q(template)} STRATEGY {strategy}"
            await maker.execute(create)
            return name

        async def produce() -> None:
            for i in range(n):
                await room.acquire()
                await ready.put(await make(i))

        async def drop(name: str) -> None:
            async with drop_lock:
                await dropper.execute(f"DROP DATABASE {q(name)}")

        producer = asyncio.create_task(produce()) if ahead else None
        drops, used = [], []
        for i in range(n):
            if producer:
                name = await ready.get()
                room.release()
            else:
                name = await make(i)
            conn = await asyncpg.connect(server.dsn(name))
            insert = "INSERT INTO task_records (id, message, worker) VALUES ($1, 'm', 'w')"
            await conn.execute(insert, uuid.uuid4())
            await conn.close()
            if defer:
                used.append(name)
            elif producer:
                drops.append(asyncio.create_task(drop(name)))
            else:
                await maker.execute(f"DROP DATABASE {q(name)}")
        await asyncio.gather(*drops)
        start = time.perf_counter()
        for name in used:
            await dropper.execute(f"DROP DATABASE {q(name)}")
        await maker.close()
        await dropper.close()
        return time.perf_counter() - start

    async def wal_mb() -> float:
        conn = await asyncpg.connect(server.dsn("postgres"))
        try:
            return float(await conn.fetchval("SELECT wal_bytes FROM pg_stat_wal")) / 2**20
        finally:
            await conn.close()

    async def one(ahead: int, strategy: str, defer: bool) -> tuple[float, float, float]:
        wal, start = await wal_mb(), time.perf_counter()
        after = await asyncio.gather(*(worker(w, ahead, strategy, defer) for w in (0, 1)))
        return time.perf_counter() - start, max(after), await wal_mb() - wal

    rows: dict[str, list[float]] = {}
    for run in range(runs):
        for label, ahead, strategy, defer in CLONE_PATTERNS[:: 1 if run % 2 == 0 else -1]:
            total, after, wal = asyncio.run(one(ahead, strategy, defer))
            rows.setdefault(f"clones {2 * n} tests: {label}", []).append(total)
            if defer:
                rows.setdefault(f"clones {2 * n} tests: {label}: the drops after", []).append(after)
            rows.setdefault(f"clones {2 * n} tests: {label}: WAL MB", []).append(wal)
    return rows


if __name__ == "__main__":
    sys.exit(main())
