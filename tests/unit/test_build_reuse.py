"""Stage reuse across builds (Build.reuse): which earlier stage image a build is told to start
from, and which tags the build leaves for the next one. A fake engine replays the legacy
builder's output; the image hash (what the tag means) never depends on any of it."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack.converge.build import KEEP_REUSE_BASES, MAX_REUSE_LAYERS, build_image, image_tag
from devstack.converge.engine_protocol import BuildRequest
from devstack.declare.spec import Build, ReusedStage

from .fake_engine import FakeEngine

DOCKERFILE = (
    "ARG BASE=python:3.12\n"
    "ARG DEPS_FROM=toolchain\n"
    "FROM ${BASE} AS toolchain\n"
    "COPY certs/ /tmp/certs/\n"
    "FROM ${DEPS_FROM} AS builder\n"
    "COPY pyproject.toml /tmp/\n"
    "FROM ${BASE} AS runtime\n"
    "COPY --from=builder /opt/venv /opt/venv\n"
    "COPY service/ /app/service/\n"
)
OLD = time.time() - 3600


@dataclass
class LegacyBuilder(FakeEngine):
    """Answers a build as the legacy builder prints it: each stage's FROM step names its base
    image, every step the image it produced (ids derived from the args it was given)."""

    requests: list[BuildRequest] = field(default_factory=list)
    layers: dict[str, int] = field(default_factory=dict)
    created: dict[str, int] = field(default_factory=dict)

    def image_info(self, reference: str) -> tuple[str, int] | None:
        image = self.images.get(reference)
        return (image, self.layers.get(image, 3)) if image else None

    def build(self, request: BuildRequest) -> Iterator[dict[str, Any]]:
        self.requests.append(request)
        n = len(self.requests)
        base = request.args.get("DEPS_FROM", f"{n:02x}0000000000")
        yield {"stream": "Step 1/9 : FROM ${BASE} AS toolchain\n"}
        yield {"stream": " ---> aaaaaaaaaaaa\n"}
        yield {"stream": "Step 2/9 : COPY certs/ /tmp/certs/\n"}
        yield {"stream": " ---> Using cache\n"}
        yield {"stream": " ---> bbbbbbbbbbbb\n"}
        yield {"stream": "Step 3/9 : FROM ${DEPS_FROM} AS builder\n"}
        yield {"stream": f" ---> {base[:12]}\n"}
        yield {"stream": "Step 4/9 : COPY pyproject.toml /tmp/\n"}
        yield {"stream": f" ---> {n:02x}1111111111\n"}
        yield {"stream": "Step 5/9 : FROM ${BASE} AS runtime\n"}
        yield {"stream": " ---> aaaaaaaaaaaa\n"}
        yield {"stream": "Step 6/9 : COPY service/ /app/service/\n"}
        yield {"stream": f" ---> {n:02x}2222222222\n"}
        self.images[request.tag] = f"{n:02x}2222222222"

    def tag_image(self, image: str, reference: str) -> None:
        self.images[reference] = image
        self.created[reference] = len(self.requests)  # the newest build's tags are the newest

    def image_tags(self, repository: str) -> dict[str, int]:
        return {
            ref: self.created.get(ref, 0)
            for ref in self.images
            if ref.rpartition(":")[0] == repository
        }


def context(root: Path) -> Build:
    for rel, text in {
        "Dockerfile": DOCKERFILE,
        "pyproject.toml": "[project]\n",
        "certs/README.md": "certs",
        "service/main.py": "app = 1\n",
    }.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        os.utime(path, (OLD, OLD))
    return Build(
        context=root,
        args=(("BASE", "python:3.12"),),
        repository="example/api",
        reuse=(ReusedStage("builder", "DEPS_FROM", ("certs", "pyproject.toml")),),
    )


def build(engine: LegacyBuilder, spec: Build) -> dict[str, str]:
    build_image(engine, spec, image_tag(spec), lambda line: None)
    return engine.requests[-1].args


def edit(path: Path, text: str) -> None:
    path.write_text(text)
    os.utime(path, (OLD + 1, OLD + 1))


def deps_tags(engine: LegacyBuilder) -> dict[str, str]:
    return {ref: image for ref, image in engine.images.items() if "-deps:" in ref}


def test_the_first_build_starts_from_the_dockerfile_default_and_tags_the_stage(
    tmp_path: Path,
) -> None:
    engine, spec = LegacyBuilder(), context(tmp_path)
    assert "DEPS_FROM" not in build(engine, spec)
    tags = deps_tags(engine)
    latest = [ref for ref in tags if ref.endswith("-builder")]
    assert len(latest) == 1 and latest[0].startswith("example/api-deps:")
    assert tags[latest[0]] == "011111111111"  # the stage's last step
    based = [ref for ref in tags if ref not in latest]
    assert len(based) == 1 and tags[based[0]] == "010000000000"  # the base it started from


def test_unchanged_dependency_inputs_pass_the_same_base_again(tmp_path: Path) -> None:
    engine, spec = LegacyBuilder(), context(tmp_path)
    build(engine, spec)
    edit(tmp_path / "service" / "main.py", "app = 2\n")  # not among the stage's reads
    assert build(engine, spec)["DEPS_FROM"] == "010000000000"  # a cached stage


def test_changed_dependency_inputs_start_from_the_latest_stage_image(tmp_path: Path) -> None:
    engine, spec = LegacyBuilder(), context(tmp_path)
    build(engine, spec)
    original = (tmp_path / "pyproject.toml").read_text()
    edit(tmp_path / "pyproject.toml", "[project]\n# a new dependency\n")
    assert build(engine, spec)["DEPS_FROM"] == "011111111111"  # incremental
    edit(tmp_path / "pyproject.toml", original)
    assert build(engine, spec)["DEPS_FROM"] == "010000000000"  # back: that build's base


def test_the_reuse_never_changes_the_image_tag(tmp_path: Path) -> None:
    spec = context(tmp_path)
    tag = image_tag(spec)
    build(LegacyBuilder(), spec)
    assert image_tag(spec) == tag
    assert image_tag(Build(context=tmp_path, args=spec.args, repository=spec.repository)) == tag


def test_another_dockerfile_args_or_base_image_start_afresh(tmp_path: Path) -> None:
    engine, spec = LegacyBuilder(), context(tmp_path)
    engine.images["python:3.12"] = "sha256:base-one"
    build(engine, spec)
    edit(tmp_path / "pyproject.toml", "[project]\n# changed\n")
    engine.images["python:3.12"] = "sha256:base-two"  # the same name, rebuilt
    assert "DEPS_FROM" not in build(engine, spec)
    other_args = Build(
        context=tmp_path,
        args=(("BASE", "python:3.13"),),
        repository=spec.repository,
        reuse=spec.reuse,
    )
    assert "DEPS_FROM" not in build(engine, other_args)
    edit(tmp_path / "Dockerfile", DOCKERFILE + "# edited\n")
    assert "DEPS_FROM" not in build(engine, spec)


def test_a_long_chain_of_reused_images_starts_afresh(tmp_path: Path) -> None:
    engine, spec = LegacyBuilder(), context(tmp_path)
    build(engine, spec)
    engine.layers["011111111111"] = MAX_REUSE_LAYERS + 1
    edit(tmp_path / "pyproject.toml", "[project]\n# changed\n")
    assert "DEPS_FROM" not in build(engine, spec)


def test_a_build_without_reuse_passes_and_tags_nothing(tmp_path: Path) -> None:
    engine, spec = LegacyBuilder(), context(tmp_path)
    plain = Build(context=tmp_path, args=spec.args, repository=spec.repository)
    assert build(engine, plain) == {"BASE": "python:3.12"}
    assert deps_tags(engine) == {}


def test_only_the_newest_bases_keep_their_tags(tmp_path: Path) -> None:
    engine, spec = LegacyBuilder(), context(tmp_path)
    for index in range(KEEP_REUSE_BASES + 3):
        edit(tmp_path / "pyproject.toml", f"[project]\n# version {index}\n")
        build(engine, spec)
    tags = deps_tags(engine)
    assert len([ref for ref in tags if ref.endswith("-builder")]) == 1
    assert len(tags) == 1 + KEEP_REUSE_BASES


def test_a_build_records_its_project_as_a_user_of_the_reuse_tags(tmp_path: Path) -> None:
    engine, spec = LegacyBuilder(), context(tmp_path)
    build_image(engine, spec, image_tag(spec), lambda line: None, project="p1")
    build_image(engine, spec, image_tag(spec), lambda line: None, project="p2")
    users = engine.image_tags("example/api-deps-users")
    assert set(users) == {"example/api-deps-users:p1", "example/api-deps-users:p2"}
    latest = next(ref for ref in deps_tags(engine) if ref.endswith("-builder"))
    assert engine.images["example/api-deps-users:p2"] == engine.images[latest]  # no more kept
    build(engine, context(tmp_path / "anonymous"))  # no project (a bench's build): no record
    assert len(engine.image_tags("example/api-deps-users")) == 2
