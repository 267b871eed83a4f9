"""The two tools behind one interface: each tool's project (name, ports, temporary tree,
settings) and the devstack and Docker Compose commands every scenario runs, plus what the
bench reads back from their output (devstack's phase timestamps, Compose's builder)."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.common import BENCH, COMPOSE_FILE, REPO, Timed, run_timed, scrubbed_env, write_env
from devstack.usecases import Project, load_project

EDITED_FILE = "service/main.py"  # up-source-change appends a comment here (the tool's copy)


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
    compose_files: tuple[Path, ...] = ()  # compose: more `-f` files (bench/scale.py)
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
        for extra in self.compose_files:
            command += ["-f", str(extra)]
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
        scenario = scenario.removesuffix("-35")  # the same command on the big stack
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

    def clean(self) -> None:
        """No container, network or volume of the project left; the machine's build cache
        kept. devstack's `down --volumes` also untags its builds' dependency caches (README:
        reuse tags), after which a build installs every dependency again from the index: a
        clean state here is a fresh clone on a machine that built before, as Compose's
        `down -v` leaves it."""
        if self.name != "devstack":
            self.down(volumes=True)
            return
        from devstack.engine.docker import DockerEngine

        self.down()
        engine = DockerEngine.connect()
        for volume in sorted(engine.snapshot(self.project).volumes):
            engine.remove_volume(volume)

    # -- states -----------------------------------------------------------------------------
    def ensure(self, wanted: str) -> None:
        """Reach `wanted` (clean | up | down) with unmeasured commands."""
        if wanted in {"", self.state}:
            return
        if wanted == "clean":
            self.clean()
        elif wanted == "up":
            self.up()
        elif wanted == "down":
            if self.state == "clean":
                self.up()
            self.down()
        self.state = wanted


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
