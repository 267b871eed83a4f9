"""Shared fixtures: a Docker client that fails (never skips) under CI=true without Docker."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

# tests/stack runs inside the stack (`python -m devstack test`), against services by their
# names: the host's pytest leaves it alone unless told it runs there.
collect_ignore = [] if os.environ.get("DEVSTACK_IN_STACK") == "1" else ["stack"]


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """tests/service runs through the devstack plugin: only when it is enabled
    (`python -m pytest -p devstack tests/service`)."""
    if collection_path.name == "service" and collection_path.parent == REPO_ROOT / "tests":
        from devstack.pytest_plugin import SESSION

        return SESSION not in config.stash or None
    return None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/integration needs a real engine: mark it so."""
    for item in items:
        if "integration" in item.path.parts:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    """A client for the real engine; under CI a missing engine is a failure."""
    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:  # any failure to reach the engine
        message = f"Docker engine not reachable: {exc}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    yield client
    client.close()
