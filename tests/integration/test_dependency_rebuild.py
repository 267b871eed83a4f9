"""A dependency change rebuilds from the previous build's environments (Build.reuse) and still
gives exactly the resolution's venv: a removed dependency is gone, an added one is installed
with valid bytecode, and the files equal those of the build that first installed them. Real
engine and PyPI; the images are tagged in a repository of this test's own, removed after."""

from __future__ import annotations

import contextlib
import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import docker
import pytest

from devstack.converge.build import build_image, image_tag
from devstack.declare.spec import Build
from devstack.engine.docker import DockerEngine

from .conftest import Project, inherited_settings
from .test_build_inputs import api_build
from .test_faults import copy_repo

PYTHON_IMAGE = inherited_settings().get(
    "DEVSTACK_PYTHON_IMAGE", "devstack-local/python:3.11-bookworm"
)
# Prints one line per file of the venv and the test site (bytecode: only whether it is valid
# for its source as it is in the image, since its bytes embed the install's timestamps).
MANIFEST = r"""
import hashlib, importlib.util, os, struct, sys
for root in ("/opt/venv", "/opt/test-site"):
    for base, dirs, files in os.walk(root):
        for name in sorted(dirs + files):
            path = os.path.join(base, name)
            if os.path.islink(path):
                print("link", path, os.readlink(path))
            elif os.path.isdir(path):
                print("dir", path, oct(os.stat(path).st_mode))
            elif path.endswith(".pyc"):
                source = os.path.join(os.path.dirname(base), name.split(".")[0] + ".py")
                header = open(path, "rb").read(16)[8:16]
                if os.path.exists(source):
                    info = os.stat(source)
                    want = struct.pack("<II", int(info.st_mtime) & 0xFFFFFFFF, info.st_size)
                    print("pyc", path, "valid" if header == want else "STALE")
            else:
                digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
                print("file", path, oct(os.stat(path).st_mode), digest)
"""


@pytest.fixture
def engine(docker_client: docker.DockerClient) -> Iterator[DockerEngine]:
    connected = DockerEngine.connect()
    yield connected
    connected.close()


@pytest.fixture
def own_build(
    tmp_path: Path,
    make_project: Callable[..., Project],
    docker_client: docker.DockerClient,
) -> Iterator[Build]:
    """The API's declared build, on a scratch copy, tagged into this test's own repository."""
    repo = copy_repo(tmp_path / "repo")
    repository = f"devstack-test-deps-{secrets.token_hex(4)}/api"
    yield replace(api_build(make_project(project_dir=repo)), repository=repository)
    for name in (repository, f"{repository}-deps"):
        for image in docker_client.images.list(name=name):
            for reference in image.tags:
                with contextlib.suppress(docker.errors.APIError):
                    docker_client.images.remove(reference, noprune=True)


def with_service_deps(build: Build, extra: list[str]) -> None:
    """The repo's `service` extra plus `extra`, and a comment no other build has seen."""
    path = build.context / "pyproject.toml"
    original = path.with_name("pyproject.toml.orig")
    if not original.exists():
        original.write_text(path.read_text())
    added = "".join(f'    "{requirement}",\n' for requirement in extra)
    text = original.read_text().replace(
        '    "alembic>=1.13",\n', f'    "alembic>=1.13",\n{added}', 1
    )
    path.write_text(text + f"# build {secrets.token_hex(4)}\n")


def built(engine: DockerEngine, build: Build) -> tuple[str, str]:
    tag, lines = image_tag(build), list[str]()
    build_image(engine, build, tag, lines.append)
    return tag, "\n".join(lines)


def manifest(client: docker.DockerClient, tag: str) -> list[str]:
    output = client.containers.run(tag, ["python", "-c", MANIFEST], remove=True, user="10001")
    return str(output.decode()).splitlines()


def test_a_dependency_change_syncs_the_previous_venv_exactly(
    engine: DockerEngine, own_build: Build, docker_client: docker.DockerClient
) -> None:
    build = replace(own_build, target="dev")
    with_service_deps(build, ["attrs>=23"])
    first, output = built(engine, build)
    assert "venv layers: new anchor" in output  # nothing to start from: a fresh install
    with_attrs = manifest(docker_client, first)
    assert any("/site-packages/attr/__init__.py" in line for line in with_attrs)

    with_service_deps(build, [])
    second, output = built(engine, build)
    assert "venv layers: new anchor" in output  # a removal: the anchor is the new venv
    without = manifest(docker_client, second)
    assert not [line for line in without if "/site-packages/attr" in line]
    assert sorted(without) == sorted(
        line for line in with_attrs if "/site-packages/attr" not in line
    )

    with_service_deps(build, ["attrs>=23"])
    third, output = built(engine, build)
    assert re.search(r"venv layers: anchor kept, delta of [1-9]\d* entries", output), output
    again = manifest(docker_client, third)
    assert not [line for line in again if line.startswith("pyc") and "STALE" in line]
    assert sorted(again) == sorted(with_attrs)  # what the first build installed, file by file


def test_a_production_build_has_no_test_site_and_no_toolchain(
    engine: DockerEngine, own_build: Build, docker_client: docker.DockerClient
) -> None:
    build = replace(own_build, target="runtime")
    with_service_deps(build, [])
    tag, _ = built(engine, build)
    found = docker_client.containers.run(
        tag,
        ["sh", "-c", "ls -d /opt/* /tmp/certs /tmp/*.txt /tmp/*.lock 2>/dev/null; true"],
        remove=True,
    )
    assert found.decode().split() == ["/opt/venv"]


def test_image_tags_tell_when_an_old_image_was_tagged(
    engine: DockerEngine, docker_client: docker.DockerClient
) -> None:
    """The reuse tags are kept by when they were last set, not by when the image was built
    (a base used again may be an old image)."""
    old = docker_client.images.get(PYTHON_IMAGE)
    repository = f"devstack-test-deps-{secrets.token_hex(4)}/tags"
    try:
        before = time.time()
        engine.tag_image(old.id, f"{repository}:a")
        tagged = engine.image_tags(repository)
        assert list(tagged) == [f"{repository}:a"]
        assert tagged[f"{repository}:a"] >= int(before) - 1
    finally:
        engine.remove_image_tag(f"{repository}:a")
    assert engine.image_tags(repository) == {}
