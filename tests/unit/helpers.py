"""Builders of settings, stacks and snapshots for the pure-layer tests (no Docker)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from devstack.converge.observed import Observed, parse_snapshot
from devstack.declare import labels
from devstack.declare.settings import Settings, load_settings
from devstack.declare.spec import Stack
from devstack.declare.stackfile import declare as declare_file

PROJECT = "demo"
REPO = Path(__file__).resolve().parents[2]
SEED_STACK = Path(__file__).with_name("seed_stack.py")  # the five services, fixed


def declare_stack(settings: Settings) -> Stack:
    """The seed's stack (seed_stack.py) declared with `settings` (any project dir)."""
    return declare_file(settings, SEED_STACK)


def settings(tmp_path: Path, text: str = "", **environ: str) -> Settings:
    env_file = tmp_path / ".env"
    env_file.write_text(f"DEVSTACK_PROJECT={PROJECT}\n{text}")
    if not (tmp_path / "stack.py").exists():  # the seed's stack, declared there
        (tmp_path / "stack.py").write_text(SEED_STACK.read_text())
    return load_settings(tmp_path, env_file, environ=environ)


def stack(tmp_path: Path, text: str = "") -> Stack:
    declared = declare_stack(settings(tmp_path, text))
    build = declared.service("api").build
    assert build is not None
    return declared.with_images({build: "devstack/api:abc"})


def container_row(stack: Stack, service: str, state: str = "running") -> dict[str, Any]:
    """A `GET /containers/json` row as the engine returns it for a container devstack made."""
    spec = stack.service(service)
    fields = labels.container_labels(
        stack.project, service, spec.config_fields(), spec.config_hash()
    )
    return {
        "Id": f"id-{service}",
        "Names": [f"/{stack.container_name(service)}"],
        "Image": spec.image,
        "ImageID": f"sha256:{spec.image}",
        "State": state,
        "Status": "Up 2 minutes (healthy)" if state == "running" else "Exited (0) 1 minute ago",
        "Labels": fields,
        "Ports": [
            {"IP": p.host_ip, "PrivatePort": p.container_port, "PublicPort": p.host_port}
            for p in spec.ports
        ],
    }


def observed(
    stack: Stack,
    services: dict[str, str] | None = None,
    network: bool = True,
    volumes: bool = True,
    images: bool = True,
    rows: list[dict[str, Any]] | None = None,
) -> Observed:
    """A snapshot where `services` maps service -> state; everything else as flagged."""
    containers = [container_row(stack, name, state) for name, state in (services or {}).items()]
    containers += rows or []
    image_rows = [
        {"Id": f"sha256:{image}", "RepoTags": [image]}
        for image in sorted({s.image for s in stack.services})
        if images
    ]
    return parse_snapshot(
        stack.project,
        containers,
        [{"Name": stack.network}] if network else [],
        [{"Name": v} for v in stack.volumes] if volumes else [],
        image_rows,
    )
