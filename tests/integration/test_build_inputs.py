"""A large tree the Dockerfile never copies (a frontend's node_modules, not in .dockerignore)
neither rebuilds the API image nor is sent to the engine (real engine, scratch repo copy)."""

from __future__ import annotations

import io
import re
import secrets
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

import devstack.converge.build
from devstack.converge.build import CA_BUNDLE_PATH, build_image, build_inputs, image_tag
from devstack.declare.settings import load_settings
from devstack.declare.spec import Build
from devstack.declare.stackfile import declare as declare_stack
from devstack.engine.docker import DockerEngine

from .conftest import Project
from .test_faults import copy_repo

UNRELATED_FILES = 20_000


def api_build(project: Project) -> Build:
    settings = load_settings(project.project_dir, project.env_file, environ={})
    build = declare_stack(settings).service("api").build
    assert build is not None
    return build


def node_modules(root: Path, count: int) -> None:
    """`count` small files in 100-file packages, as `npm install` leaves them."""
    for index in range(count):
        package = root / "frontend" / "node_modules" / f"pkg{index // 100}"
        if index % 100 == 0:
            package.mkdir(parents=True)
        (package / f"f{index % 100}.js").write_text(f"module.exports = {index};\n")


def image_line(plan: str, tag: str) -> str:
    match = re.search(rf"^\S+\s+image\s+{re.escape(tag)}\s.*$", plan, re.MULTILINE)
    assert match, plan
    return match.group(0)


def test_an_unrelated_tree_neither_rebuilds_nor_is_sent(
    tmp_path: Path, make_project: Callable[..., Project], monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = copy_repo(tmp_path / "repo")
    marker = repo / "service" / "__init__.py"  # an image of this test's own (removed after)
    marker.write_text(marker.read_text() + f"# build-inputs test {secrets.token_hex(4)}\n")
    project = make_project(project_dir=repo)
    build = api_build(project)
    tag = image_tag(build)
    assert "build " in image_line(project.run("up", "--plan").stdout, tag)

    node_modules(repo, UNRELATED_FILES)
    assert image_tag(build) == tag  # the tree is not an input

    sent: list[list[str]] = []
    real_tar = devstack.converge.build._context_tar

    def recording_tar(of: Build) -> io.BytesIO:
        buffer = real_tar(of)
        with tarfile.open(fileobj=buffer) as tar:
            sent.append(tar.getnames())
        buffer.seek(0)
        return buffer

    monkeypatch.setattr(devstack.converge.build, "_context_tar", recording_tar)
    engine = DockerEngine.connect()
    try:
        build_image(engine, build, tag, lambda line: None)
    finally:
        engine.close()
    assert len(sent) == 1
    assert not [name for name in sent[0] if name.startswith("frontend/")]
    expected = set(build_inputs(build).files) | ({CA_BUNDLE_PATH} if build.ca_bundle else set())
    assert set(sent[0]) == expected

    line = image_line(project.run("up", "--plan").stdout, tag)
    assert line.startswith("keep") and "inputs unchanged" in line, line
