"""One benchmark run: the temporary trees and settings, the warm-up, the order of tools,
scenarios and floors, the samples, and removing everything the run created."""

from __future__ import annotations

import contextlib
import secrets
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors

from bench import scale, scenarios
from bench.common import (
    INHERITED,
    REPO,
    TOOLS,
    BenchError,
    CommandFailed,
    free_ports,
    log,
    remove_labelled,
    write_env,
)
from bench.floor import run_floors
from bench.scenarios import (
    COMPOSE_ONLY,
    DEVSTACK_ONLY,
    FLOORS,
    PYPROJECT,
    SCENARIOS,
    UNRELATED_FILES,
)
from bench.tools import EDITED_FILE, Tool, compose_builder, phase_profile
from devstack.converge.build import CA_BUNDLE_PATH
from devstack.declare import labels
from devstack.declare.envfile import read_env_file
from devstack.engine.docker import DockerEngine
from devstack.errors import DevstackError
from devstack.usecases import load_project
from devstack.usecases.lock import lock_path

# The build inputs copied into the temporary trees (what the Dockerfile and devstack read;
# stack.py: the project's own declaration, where there is one). Missing ones are skipped.
COPIED = (
    "Dockerfile",
    ".dockerignore",
    "pyproject.toml",
    "stack.py",
    "certs",
    "service",
    "alembic",
    "image-build",
    "monitoring",  # stack.py reads the dashboard there
)
# The scenarios that take several commands (the others are one command: Tool.run_simple).
MULTI_STEP = {
    "unrelated-tree": scenarios.unrelated_tree,
    "dependency-change": scenarios.dependency_change,
    "hot-reload": scenarios.hot_reload,
    "worker-reload": scenarios.worker_reload,
    scale.FRESH_BUILD: scale.fresh_build,
}


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
    scale_tools: dict[str, Tool] = field(default_factory=dict)  # bench/scale.py's twins
    engine: DockerEngine = field(init=False)

    def __post_init__(self) -> None:
        self.engine = DockerEngine.connect()  # where the devstack commands go (DOCKER_HOST...)

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
        project = load_project(base, probe)
        self.service_names = project.stack.names
        # every group's ports too: a bench `up --with GROUP` must not take the defaults
        keys = [port.setting for port, _ in project.whole.published_ports()]
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
        own = tool
        for scenario in self.scenarios:
            if scenario in FLOORS or (scenario in COMPOSE_ONLY and tool.name != "compose"):
                continue
            if scenario in DEVSTACK_ONLY and tool.name != "devstack":
                continue
            target = scale.scale_tool(self, own) if scenario in scale.SCALED else own
            if target is not tool:  # the big stack's twin (bench/scale.py), or back
                tool.ensure("clean")
                tool = target
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
        own.ensure("clean")

    def run_scenario(self, tool: Tool, scenario: str, index: int) -> None:
        """Measure one scenario for one tool and record its samples."""
        if scenario in MULTI_STEP:
            MULTI_STEP[scenario](self, tool, index)
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
                run_floors(self, index)

    # -- cleanup ----------------------------------------------------------------------------
    def forget_reuse_tags(self) -> None:
        """Untag the dependency caches the run's builds tagged (bench/tools.py: a clean state
        keeps them); those someone had before the run stay theirs."""
        from devstack.converge.build import reuse_repository, users_repository

        builds = {s.build for t in self.tool_objs.values() for s in t.declared().stack.services}
        for build in filter(None, builds):
            for repository in (reuse_repository(build), users_repository(build)):
                for reference in self.engine.image_tags(repository):
                    if reference not in self.preexisting_images:
                        self.engine.remove_image_tag(reference)

    def cleanup(self) -> None:
        """Remove every container, network, volume and image tag the run created."""
        for tool in self.tool_objs.values():
            with contextlib.suppress(Exception):
                if tool.state not in {"clean"}:
                    tool.ensure("clean")
            label = labels.PROJECT if tool.name == "devstack" else "com.docker.compose.project"
            remove_labelled(self.client, label, tool.project)
            lock_path(tool.project).unlink(missing_ok=True)  # devstack keeps its lock files
        for twin in self.scale_tools.values():
            with contextlib.suppress(Exception):
                if twin.state not in {"clean"}:
                    twin.ensure("clean")
        scale.cleanup(self)
        remove_labelled(self.client, labels.PROJECT, self.floor_project)
        for image in sorted(self.made_images - self.preexisting_images):
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                self.client.images.remove(image)
        self.forget_reuse_tags()
        for image_id in self.made_image_ids:  # untagged by a later build; never forced
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                self.client.images.remove(image_id)
        shutil.rmtree(self.work, ignore_errors=True)
