"""The build hash and the build context: only the Dockerfile's inputs count and are sent, and
the digest cache reads a file again only when its stat changed (real files, no engine)."""

from __future__ import annotations

import json
import os
import tarfile
import time
from pathlib import Path

import pytest

from devstack.converge.build import (
    CA_BUNDLE_PATH,
    DIGEST_CACHE,
    DigestCache,
    _context_tar,
    build_hash,
    build_inputs,
    fallback_reason,
    image_tag,
)
from devstack.converge.buildinputs import CACHE_DIR
from devstack.declare.spec import Build
from devstack.errors import ConfigError

DOCKERFILE = (
    "FROM base AS builder\n"
    "COPY pyproject.toml /tmp/\n"
    "COPY certs/ /tmp/certs/\n"
    "FROM base AS runtime\n"
    "COPY --from=builder /opt/venv /opt/venv\n"
    "COPY service/ /app/service/\n"
)
OLD = time.time() - 3600  # an mtime well outside the racy window


def make_context(root: Path, dockerfile: str = DOCKERFILE) -> Build:
    files = {
        "Dockerfile": dockerfile,
        ".dockerignore": "**/__pycache__\n*.md\n",
        "pyproject.toml": "[project]\n",
        "certs/README.md": "certs",
        "service/main.py": "app = 1\n",
        "service/routes/x.py": "x = 1\n",
    }
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        os.utime(path, (OLD, OLD))
    return Build(context=root, args=(("PYTHON_IMAGE", "python:3.12"),))


def unrelated_tree(root: Path, count: int = 50) -> None:
    modules = root / "frontend" / "node_modules"
    modules.mkdir(parents=True)
    for index in range(count):
        (modules / f"m{index}.js").write_text(f"module {index}\n")


# --- what counts --------------------------------------------------------------------------
def test_a_file_the_dockerfile_does_not_copy_changes_nothing(tmp_path: Path) -> None:
    build = make_context(tmp_path)
    before = build_hash(build)
    unrelated_tree(tmp_path)
    (tmp_path / "notes.txt").write_text("scratch")
    (tmp_path / "service" / "__pycache__").mkdir()
    (tmp_path / "service" / "__pycache__" / "main.pyc").write_bytes(b"\0")
    assert build_hash(build) == before


@pytest.mark.parametrize(
    "change",
    [
        lambda root: (root / "service" / "main.py").write_text("app = 2\n"),
        lambda root: (root / "service" / "new.py").write_text(""),
        lambda root: (root / "service" / "routes" / "x.py").unlink(),
        lambda root: (root / "service" / "main.py").chmod(0o755),
        lambda root: (root / "pyproject.toml").write_text("[project]\nname = 'x'\n"),
        lambda root: (root / "certs" / "extra.crt").write_text("ca"),
        lambda root: (root / ".dockerignore").write_text("**/__pycache__\n"),
        lambda root: (root / "Dockerfile").write_text(DOCKERFILE + "ENV A=1\n"),
    ],
    ids=["edit", "add", "delete", "chmod", "deps", "certs", "dockerignore", "dockerfile"],
)
def test_a_change_to_an_input_changes_the_hash(tmp_path: Path, change: object) -> None:
    build = make_context(tmp_path)
    before = build_hash(build)
    change(tmp_path)  # type: ignore[operator]
    assert build_hash(build) != before


def test_build_args_target_and_ca_bundle_count(tmp_path: Path) -> None:
    build = make_context(tmp_path)
    bundle = tmp_path.parent / f"{tmp_path.name}-ca.pem"
    bundle.write_text("one")
    with_bundle = Build(tmp_path, args=build.args, ca_bundle=bundle)
    hashes = {
        build_hash(build),
        build_hash(Build(tmp_path, args=(("PYTHON_IMAGE", "python:3.13"),))),
        build_hash(Build(tmp_path, args=build.args, target="builder")),
        build_hash(with_bundle),
    }
    assert len(hashes) == 4
    before = build_hash(with_bundle)
    bundle.write_text("two")
    assert build_hash(with_bundle) != before
    # a bundle file left in certs/ is never an input: the configured one is injected instead
    (tmp_path / CA_BUNDLE_PATH).write_text("stale")
    assert build_hash(build) in hashes


def test_whole_context_fallback_is_reported_and_every_file_counts(tmp_path: Path) -> None:
    build = make_context(tmp_path, "FROM base\nCOPY . /app\n")
    assert "copies the whole build context" in fallback_reason(build)
    assert build_inputs(build).whole_context
    before = build_hash(build)
    (tmp_path / "notes.txt").write_text("scratch")
    assert build_hash(build) != before
    assert fallback_reason(make_context(tmp_path / "ok")) == ""


def test_a_missing_dockerfile_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no Dockerfile in"):
        image_tag(Build(tmp_path))


def test_the_context_sent_holds_only_the_inputs_and_the_ca_bundle(tmp_path: Path) -> None:
    build = make_context(tmp_path)
    unrelated_tree(tmp_path)
    bundle = tmp_path / "host-ca.pem"
    bundle.write_text("ca")
    build = Build(tmp_path, args=build.args, ca_bundle=bundle)
    with tarfile.open(fileobj=_context_tar(build)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert sorted(members) == [
            ".dockerignore",
            "Dockerfile",
            "certs/README.md",  # `*.md` in .dockerignore is the top level only, as in docker
            CA_BUNDLE_PATH,
            "pyproject.toml",
            "service/main.py",
            "service/routes/x.py",
        ]
        assert {m.mtime for m in members.values()} == {0}
        handle = tar.extractfile(members[CA_BUNDLE_PATH])
        assert handle is not None and handle.read() == b"ca"


# --- the digest cache ---------------------------------------------------------------------
def digests(build: Build, cache_file: Path, **options: int) -> tuple[str, DigestCache]:
    cache = DigestCache(cache_file, **options)
    return build_hash(build, cache), cache


def test_unchanged_files_are_not_read_again_and_changed_ones_are(tmp_path: Path) -> None:
    build = make_context(tmp_path / "ctx")
    cache_file = tmp_path / "ctx" / CACHE_DIR / DIGEST_CACHE
    cold, cache = digests(build, cache_file)
    assert cache.reads == len(build_inputs(build).files) == 6
    warm, cache = digests(build, cache_file)
    assert (warm, cache.reads) == (cold, 0)

    main = tmp_path / "ctx" / "service" / "main.py"
    main.write_text("app = 2\n")  # same size, new content
    os.utime(main, (OLD + 1, OLD + 1))
    changed, cache = digests(build, cache_file)
    assert changed != cold and cache.reads == 1
    again, cache = digests(build, cache_file)
    assert (again, cache.reads) == (changed, 0)


def test_a_touched_file_is_read_again_with_the_same_hash(tmp_path: Path) -> None:
    build = make_context(tmp_path)
    cache_file = tmp_path / CACHE_DIR / DIGEST_CACHE
    cold, _ = digests(build, cache_file)
    os.utime(tmp_path / "pyproject.toml", (OLD + 5, OLD + 5))
    touched, cache = digests(build, cache_file)
    assert (touched, cache.reads) == (cold, 1)


def test_a_file_changed_just_now_is_not_remembered(tmp_path: Path) -> None:
    build = make_context(tmp_path)
    cache_file = tmp_path / CACHE_DIR / DIGEST_CACHE
    digests(build, cache_file)
    (tmp_path / "service" / "main.py").write_text("app = 3\n")  # mtime: now
    first, cache = digests(build, cache_file)
    assert cache.reads == 1
    second, cache = digests(build, cache_file)  # still within the racy window: read again
    assert (second, cache.reads) == (first, 1)
    third, cache = digests(build, cache_file, racy_ns=0)
    assert (third, cache.reads) == (first, 1)
    fourth, cache = digests(build, cache_file, racy_ns=0)
    assert (fourth, cache.reads) == (first, 0)


def test_the_cache_lives_in_the_context_and_ignores_itself(tmp_path: Path) -> None:
    build = make_context(tmp_path, "FROM base\nCOPY . /app\n")  # even the whole context
    first = build_hash(build)
    data = json.loads((tmp_path / CACHE_DIR / DIGEST_CACHE).read_text())
    assert "service/main.py" in data["files"]
    assert (tmp_path / CACHE_DIR / ".gitignore").read_text().endswith("*\n")
    assert build_hash(build) == first
    assert not any(f.startswith(CACHE_DIR) for f in build_inputs(build).files)


@pytest.mark.parametrize("damage", ["corrupt", "wrong-shape", "old-version"])
def test_a_damaged_cache_only_costs_reads(tmp_path: Path, damage: str) -> None:
    build = make_context(tmp_path)
    cache_file = tmp_path / CACHE_DIR / DIGEST_CACHE
    cold, _ = digests(build, cache_file)
    text = {
        "corrupt": "{not json",
        "wrong-shape": json.dumps({"version": 1, "files": {"Dockerfile": [1, "x"]}}),
        "old-version": json.dumps({"version": 0, "files": {}}),
    }[damage]
    cache_file.write_text(text)
    again, cache = digests(build, cache_file)
    assert (again, cache.reads) == (cold, 6)
    assert json.loads(cache_file.read_text())["version"] == 1  # rewritten


def test_an_unwritable_cache_location_only_costs_reads(tmp_path: Path) -> None:
    build = make_context(tmp_path)
    (tmp_path / CACHE_DIR).write_text("a file where the cache directory would go")
    cold, cache = digests(build, tmp_path / CACHE_DIR / DIGEST_CACHE)
    assert cache.reads == 6
    again, cache = digests(build, tmp_path / CACHE_DIR / DIGEST_CACHE)
    assert (again, cache.reads) == (cold, 6)
    assert build_hash(build) == cold  # the default cache location, same trouble
    assert not list(tmp_path.glob("*.tmp"))


def test_a_read_only_context_only_costs_reads(tmp_path: Path) -> None:
    build = make_context(tmp_path / "ctx")
    readonly = tmp_path / "ctx"
    os.chmod(readonly, 0o555)
    try:
        if os.access(readonly, os.W_OK):  # root ignores permissions: use a path that cannot be
            cache_file = Path("/proc/devstack-no-such-dir") / DIGEST_CACHE
        else:
            cache_file = readonly / CACHE_DIR / DIGEST_CACHE
        cold, cache = digests(build, cache_file)
        again, cache = digests(build, cache_file)
        assert (again, cache.reads) == (cold, 6)
    finally:
        os.chmod(readonly, 0o755)
