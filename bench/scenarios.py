"""The scenarios: their names, titles and required states, the files they edit, and the
three that take more than one command (a tree full of unrelated files, a dependency change,
hot reload). The one-command scenarios are `Tool.run_simple`; the floors are bench/floor.py."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from bench.common import BenchError, http_get, log, poll_until, write_atomically
from bench.tools import compose_builder
from devstack.declare.checks import HttpGet
from devstack.declare.spec import Service, Stack

if TYPE_CHECKING:
    from bench.harness import Bench
    from bench.tools import Tool

# Files the scenarios edit (in the tools' copies only; up-source-change's: tools.EDITED_FILE).
RELOAD_FILE = "service/routes/meta.py"  # hot-reload appends a route to this module's `router`
RELOAD_PATH = "/bench-reload"  # ... served at this path, answering {"mark": ...}
WORKER_FILE = "service/tasks.py"  # worker-reload changes the message its task records
WORKER_NEEDLE = "return asyncio.run(record_task(dsn, task_id, message, worker, work_s))"
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
    "worker-reload": ("9b. worker reload: save -> a task runs the new code", "up", "up"),
    "down": ("5. down (keep volumes)", "up", "down"),
    "up-volumes": ("2. up with existing volumes", "down", "up"),
    "down-volumes": ("5b. down --volumes", "up", "clean"),
    "up-fresh-1s": ("1b. up from nothing, compose health interval 1s", "clean", "clean"),
    "floor": ("readiness floor (declared start order, 20 ms polling)", "", ""),
    # The same with existing volumes (scenario 2's floor), and with every service started at
    # once, ignoring the declared order (informational: a lower bound).
    "floor-volumes": ("readiness floor, existing volumes", "", ""),
    "floor-parallel": ("readiness floor, every service started at once (jobs in order)", "", ""),
    # Issue 23 (bench/scale.py): the first up with its image build, and the stack plus 30
    # small Redis containers.
    "up-fresh-build": ("1c. first up of a fresh clone, image build included", "clean", "clean"),
    "up-fresh-35": ("10. up from nothing, 35 services", "clean", "up"),
    "up-noop-35": ("10b. no-op up, 35 services", "up", "up"),
    "status-35": ("10c. status, 35 services", "up", "up"),
}
FLOORS = ("floor", "floor-volumes", "floor-parallel")
COMPOSE_ONLY = ("up-fresh-1s",)
DEVSTACK_ONLY = ("up-fresh-build", "worker-reload")
ORDER = list(SCENARIOS)


# --- edits -----------------------------------------------------------------------------------
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


# --- the scenarios of several commands -------------------------------------------------------
def unrelated_tree(bench: Bench, tool: Tool, index: int) -> None:
    """status and no-op up, clean and with UNRELATED_FILES files in frontend/node_modules
    (not in .dockerignore, copied by no Dockerfile line); a devstack up with them must
    not rebuild or recreate anything."""
    stash = bench.work / f"unrelated-{tool.name}"
    if not stash.exists():
        make_unrelated_tree(stash, bench.unrelated_files)
    top = Path(UNRELATED_DIR).parts[0]

    def measure(suffix: str) -> None:
        for _ in range(TREE_REPEATS):
            bench.record(f"unrelated-tree:status{suffix}", tool.name, tool.status().seconds)
        for _ in range(TREE_REPEATS):
            bench.record(f"unrelated-tree:up{suffix}", tool.name, tool.up().seconds)

    measure("-clean")
    before = bench.built_state(tool) if tool.name == "devstack" else {}
    os.rename(stash / top, tool.tree / top)
    try:
        first = tool.up()
        after = bench.built_state(tool) if tool.name == "devstack" else {}
        measure("")
    finally:
        os.rename(tool.tree / top, stash / top)
    if tool.name == "devstack":
        changed = sorted(name for name in before if before[name] != after.get(name))
        bench.notes.setdefault("unrelated_tree", []).append(
            {"run": index, "first_up_s": round(first.seconds, 3), "rebuilt": changed}
        )
        if changed:  # back to the clean tree's images, unmeasured
            tool.up()
    log(
        f"run {index}/{bench.runs} {tool.name:<8} unrelated-tree    first up with the "
        f"files {first.seconds:.3f}s"
    )


def dependency_change(bench: Bench, tool: Tool, index: int) -> None:
    """Add DEPENDENCY to the EXTRA extra of the tool's pyproject.toml (a comment unique to
    the tool and run: no cache of another build applies), then rebuild and converge."""
    tool.dependency_edits += 1
    comment = f"bench {tool.name} {bench.run_id} {tool.dependency_edits}"
    (tool.tree / PYPROJECT).write_text(with_dependency(tool.pyproject, DEPENDENCY, comment))
    before = bench.built_state(tool) if tool.name == "devstack" else {}
    timed = tool.rebuild_up()
    bench.record("dependency-change", tool.name, timed.seconds)
    if tool.name == "compose":
        bench.notes["compose_builder"] = compose_builder(timed.stdout + timed.stderr)
        bench.made_image_ids.add(bench.client.images.get(tool.build_image).id)
    else:
        after = bench.built_state(tool)
        if before == after:
            raise BenchError("devstack up rebuilt nothing after the dependency change")
    log(f"run {index}/{bench.runs} {tool.name:<8} dependency-change {timed.seconds:7.3f}s")


def measure_saves(
    bench: Bench, tool: Tool, index: int, scenario: str, save_and_wait: Callable[[str], float]
) -> None:
    """One unmeasured save (`save_and_wait(mark)`: seconds until the mark shows), then
    RELOAD_EDITS measured ones RELOAD_GAP apart, recorded as `scenario`."""
    save_and_wait(f"warm-{index}")
    for edit in range(1, RELOAD_EDITS + 1):
        time.sleep(RELOAD_GAP)
        seconds = save_and_wait(f"{index}-{edit}")
        bench.record(scenario, tool.name, seconds)
        log(f"run {index}/{bench.runs} {tool.name:<8} {scenario:<17} {seconds:7.3f}s")


def hot_reload(bench: Bench, tool: Tool, index: int) -> None:
    """Save RELOAD_FILE with a new route answer; time until the server answers with it.
    devstack runs the dev server its declaration names; Compose's file runs plain
    `uvicorn --reload`. One unmeasured save first (the route appears), RELOAD_EDITS
    measured saves, then the original file is put back (no rebuild on the next up)."""
    service, check = reload_target(tool.declared().stack, tool.tree)
    if tool.name == "devstack":
        bench.notes["hot_reload_devstack_command"] = list(service.command)
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
        measure_saves(bench, tool, index, "hot-reload", save_and_wait)
    finally:
        write_atomically(path, original)

    def restored() -> bool:
        reply = http_get(check.host, check.port, RELOAD_PATH)
        return reply is not None and reply[0] == 404

    poll_until(restored, time.perf_counter() + 60, RELOAD_POLL)


def worker_reload(bench: Bench, tool: Tool, index: int) -> None:
    """Save WORKER_FILE with a task that records a new mark; time until a task queued through
    the API records it (tasks queued back to back, each waited for). One unmeasured save
    first (the first restart after `up` imports what devserver has not preloaded yet), then
    RELOAD_EDITS measured saves; the file is put back at the end. devstack only: Compose has
    no reloader for a worker."""
    _, check = reload_target(tool.declared().stack, tool.tree)
    api = f"http://{check.host}:{check.port}"
    path = tool.tree / WORKER_FILE
    original = path.read_text()
    if WORKER_NEEDLE not in original:
        raise BenchError(f"{WORKER_FILE} no longer has the line the bench changes")

    def recorded(deadline: float) -> str:
        queued = httpx.post(f"{api}/api/v1/tasks", json={"message": "m"}, timeout=5).json()
        while time.perf_counter() < deadline:
            state = httpx.get(api + queued["url"], timeout=5).json()
            if state["state"] == "SUCCESS":
                return str(state["result"]["message"])
            time.sleep(RELOAD_POLL)
        raise TimeoutError("no task ran within a minute of the save")

    def save_and_wait(mark: str) -> float:
        changed = WORKER_NEEDLE.replace("message,", f"message + {mark!r},")
        saved = time.perf_counter()
        write_atomically(path, original.replace(WORKER_NEEDLE, changed))
        while not recorded(saved + 60).endswith(mark):
            pass
        return time.perf_counter() - saved

    try:
        measure_saves(bench, tool, index, "worker-reload", save_and_wait)
    finally:
        write_atomically(path, original)
