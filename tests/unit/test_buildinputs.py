"""Build inputs derived from the Dockerfile: the COPY/ADD parser (many Dockerfile shapes) and
the resolution of its sources against a context and its .dockerignore (real files)."""

from __future__ import annotations

from pathlib import Path

import pytest

from devstack.converge.buildinputs import _Dockerignore, parse_sources, resolve_inputs

REPO_ROOT = Path(__file__).resolve().parents[2]


def sources(text: str) -> tuple[str, ...]:
    parsed = parse_sources(text)
    assert parsed.fallback == "", parsed.fallback
    return parsed.sources


# --- the parser ----------------------------------------------------------------------------
def test_the_repos_dockerfile_reads_pyproject_certs_service_and_alembic() -> None:
    assert sorted(sources((REPO_ROOT / "Dockerfile").read_text())) == [
        "alembic",
        "certs",
        "image-build/venv_layers.py",
        "pyproject.toml",
        "service",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("COPY a.txt /x/\n", ("a.txt",)),
        ("copy a.txt /x/\n", ("a.txt",)),  # instructions are case-insensitive
        ("  COPY  a.txt\t/x/\n", ("a.txt",)),
        ("COPY\ta.txt /x/\n", ("a.txt",)),
        ("COPY ./src/ /app/src/\n", ("src",)),
        ("COPY /src/lib//x/../y.py /app/\n", ("src/lib/y.py",)),
        ("COPY a b c /dest/\n", ("a", "b", "c")),
        ("COPY --chown=app:app --chmod=0644 conf/ /etc/app/\n", ("conf",)),
        ("COPY --link --parents --chmod=755 bin/ /usr/local/bin/\n", ("bin",)),
        ("COPY -- --odd-name /x\n", ("--odd-name",)),
        ('COPY ["a b.txt", "c.txt", "/dest/"]\n', ("a b.txt", "c.txt")),
        ('COPY --chown=1:1 ["src/", "/app/"]\n', ("src",)),
        ("COPY [not json /dest/\n", ("[not", "json")),  # a malformed array is the shell form
        ("ADD archive.tar.gz /opt/\n", ("archive.tar.gz",)),
        ("ADD https://example.com/x.tgz local.cfg /opt/\n", ("local.cfg",)),
        ("ADD git@github.com:a/b.git /src\n", ()),
        ("ADD --checksum=sha256:abc https://example.com/x /x\n", ()),
        ("COPY --from=builder /opt/venv /opt/venv\n", ()),
        ("COPY --FROM=builder /opt/venv /opt/venv\n", ()),
        ("COPY --from=python:3.12 /usr/bin/python3 /x\n", ()),
        ("COPY onlyone\n", ()),  # the build itself rejects it
        ("ONBUILD COPY . /app\n", ()),  # runs in images built FROM this one
        ("RUN cp . /x\nCMD COPY . .\n", ()),
        ("COPY *.txt [ab].cfg ?.md /x/\n", ("*.txt", "[ab].cfg", "?.md")),
        ("COPY a /x\nCOPY a /y\nADD ./a /z\n", ("a",)),
    ],
)
def test_copy_and_add_shapes(text: str, expected: tuple[str, ...]) -> None:
    assert sources(text) == expected


def test_line_continuations_comments_and_blank_lines_inside() -> None:
    text = (
        "FROM base AS builder\n"
        "COPY --chown=app \\\n"
        "    pyproject.toml \\\n"
        "# a comment inside the instruction\n"
        "\n"
        "    README.md   \\  \n"
        "    /app/\n"
        "RUN echo \\\n"
        "    COPY nothing /here\n"
    )
    assert sources(text) == ("pyproject.toml", "README.md")


def test_escape_directive_backtick() -> None:
    text = "# escape=`\nFROM base\nCOPY a `\n     b C:\\\\dest\\\\\n"
    assert sources(text) == ("a", "b")


def test_a_directive_after_a_comment_is_a_comment() -> None:
    text = "# a comment\n# escape=`\nCOPY a `\n  b /x\n"
    assert sources(text) == ("a",)  # no continuation: "COPY a `" copies a to "`"


def test_every_stage_counts_and_from_copies_do_not() -> None:
    text = (
        "ARG PYTHON_IMAGE=python:3.12-slim\n"
        "FROM ${PYTHON_IMAGE} AS builder\n"
        "COPY pyproject.toml /tmp/\n"
        "FROM ${PYTHON_IMAGE} AS runtime\n"
        "COPY --from=builder /opt/venv /opt/venv\n"
        "COPY service/ /app/service/\n"
        "COPY alembic.ini /app/\n"
        "COPY alembic/ /app/alembic/\n"
        "FROM runtime AS dev\n"
        "COPY --from=builder /tmp/x /tmp/x\n"
        "COPY requirements-dev.txt /tmp/\n"
    )
    assert sources(text) == (
        "pyproject.toml",
        "service",
        "alembic.ini",
        "alembic",
        "requirements-dev.txt",
    )


@pytest.mark.parametrize(
    "text",
    ["COPY . .\n", "COPY ./ /app\n", "COPY / /app\n", 'COPY [".", "/app"]\n', "ADD . /app\n"],
)
def test_copying_the_whole_context_falls_back(text: str) -> None:
    parsed = parse_sources("FROM base\n" + text)
    assert "line 2" in parsed.fallback
    assert "copies the whole build context" in parsed.fallback


@pytest.mark.parametrize(
    "source",
    ["$SRC", "${SRC}/x", "src/${NAME:-a}", '"quoted name"', "'single'", "<<EOF", "a\\b"],
)
def test_a_source_that_cannot_be_resolved_falls_back(source: str) -> None:
    parsed = parse_sources(f"FROM base\nARG SRC=x\nCOPY {source} /app/\n")
    assert "line 3" in parsed.fallback
    assert "cannot tell which files" in parsed.fallback


def test_the_fallback_is_reported_once_for_the_first_line() -> None:
    parsed = parse_sources("COPY a /x\nCOPY $A /y\nCOPY . .\nCOPY $B /z\n", "docker/App.df")
    assert parsed.fallback.startswith("cannot tell which files docker/App.df line 2")
    assert parsed.fallback.count("line") == 1


# --- resolving sources against a context ----------------------------------------------------
def tree(root: Path, *paths: str) -> None:
    for path in paths:
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(path)


def test_only_named_sources_are_inputs_after_dockerignore(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(
        "FROM base\nCOPY pyproject.toml /x/\nCOPY certs/ /c/\nCOPY service/ /s/\n"
    )
    (tmp_path / ".dockerignore").write_text(
        "# comment\n**/__pycache__\n**/*.pyc\n**/*.md\n!certs/README.md\ntests\n"
    )
    tree(
        tmp_path,
        "pyproject.toml",
        "certs/README.md",
        "certs/other.md",
        "certs/devstack-ca-bundle.pem",
        "service/main.py",
        "service/__pycache__/main.cpython-311.pyc",
        "service/sub/x.pyc",
        "service/sub/y.py",
        "frontend/node_modules/a/index.js",
        "README.md",
        "tests/test_x.py",
    )
    inputs = resolve_inputs(tmp_path, never=("certs/devstack-ca-bundle.pem",))
    assert inputs.files == (
        ".dockerignore",
        "Dockerfile",
        "certs/README.md",
        "pyproject.toml",
        "service/main.py",
        "service/sub/y.py",
    )
    assert not inputs.whole_context


def test_dockerfile_and_dockerignore_are_inputs_even_when_ignored(tmp_path: Path) -> None:
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "App.dockerfile").write_text("FROM base\nCOPY app.py /\n")
    (tmp_path / ".dockerignore").write_text("build\n.dockerignore\n")
    tree(tmp_path, "app.py")
    inputs = resolve_inputs(tmp_path, "build/App.dockerfile")
    assert inputs.files == (".dockerignore", "app.py", "build/App.dockerfile")


def test_globs_match_per_segment_and_matched_directories_count_whole(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(
        "FROM base\nCOPY *.txt [ab].cfg ?.ini conf/*/settings.* pkg* /x/\n"
    )
    tree(
        tmp_path,
        "one.txt",
        ".hidden.txt",
        "deep/no.txt",
        "a.cfg",
        "c.cfg",
        "x.ini",
        "xy.ini",
        "conf/dev/settings.toml",
        "conf/dev/other.toml",
        "conf/a/b/settings.toml",
        "pkg/mod.py",
        "pkg/sub/deep.py",
        "pkgfile",
    )
    assert resolve_inputs(tmp_path).files == (
        ".hidden.txt",
        "Dockerfile",
        "a.cfg",
        "conf/dev/settings.toml",
        "one.txt",
        "pkg/mod.py",
        "pkg/sub/deep.py",
        "pkgfile",
        "x.ini",
    )


def test_negated_class_and_missing_sources(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM base\nCOPY [^a]*.py nowhere/ gone.txt /x/\n")
    tree(tmp_path, "app.py", "bin.py")
    assert resolve_inputs(tmp_path).files == ("Dockerfile", "bin.py")


def test_whole_context_fallback_walks_everything_not_ignored(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM base\nWORKDIR /app\nCOPY . .\n")
    (tmp_path / ".dockerignore").write_text("node_modules\ndocs\n!docs/keep.md\n")
    tree(
        tmp_path,
        "app.py",
        "node_modules/x/y.js",
        "docs/drop.md",
        "docs/keep.md",
        ".devstack-cache/build-digests.json",
    )
    inputs = resolve_inputs(tmp_path)
    assert inputs.whole_context
    assert "line 3" in inputs.fallback
    assert inputs.files == (".dockerignore", "Dockerfile", "app.py", "docs/keep.md")


def test_symlinks_are_inputs_as_links(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM base\nCOPY src/ /src/\n")
    tree(tmp_path, "src/real.py", "elsewhere/big/file")
    (tmp_path / "src" / "link.py").symlink_to("real.py")
    (tmp_path / "src" / "dirlink").symlink_to("../elsewhere")
    assert resolve_inputs(tmp_path).files == (
        "Dockerfile",
        "src/dirlink",
        "src/link.py",
        "src/real.py",
    )


@pytest.mark.parametrize(
    ("patterns", "path", "excluded"),
    [
        (["**/__pycache__"], "a/b/__pycache__/x.pyc", True),  # any depth, as docker does
        (["**/*.pyc"], "x.pyc", True),
        (["*.md"], "README.md", True),
        (["*.md"], "docs/guide.md", False),  # `*` stops at a slash
        (["docs"], "docs/a/b.txt", True),  # a directory's pattern covers what is under it
        (["docs/"], "docs/a.txt", True),
        (["/docs"], "docs/a.txt", True),
        (["./docs/../docs"], "docs/a.txt", True),
        (["docs", "!docs/keep.md"], "docs/keep.md", False),
        (["!docs/keep.md", "docs"], "docs/keep.md", True),  # the last match decides
        (["*", "!service"], "service/x/y.py", False),
        (["*", "!service", "service/*.pyc"], "service/a.pyc", True),
        (["Docs"], "docs/a.txt", False),  # case-sensitive
        (["."], "a.txt", False),  # "for historical reasons, the pattern . is ignored"
        (["file?.txt", "[ab].cfg"], "file1.txt", True),
        (["[ab].cfg"], "c.cfg", False),
        (["a/**/c"], "a/b/d/c/x.txt", True),  # `**` in the middle: any number of directories
        (["a/**/c"], "a/c", True),
        (["a/**/c"], "a/b/cc", False),
        (["../x", "  y//z  "], "x/1", True),  # cleaned as Go's filepath.Clean cleans
        (["../x", "  y//z  "], "y/z", True),
        ([], "anything", False),
    ],
)
def test_dockerignore_semantics(patterns: list[str], path: str, excluded: bool) -> None:
    assert _Dockerignore(patterns).matches(path) is excluded


@pytest.mark.parametrize(
    ("patterns", "directory", "prunable"),
    [
        (["node_modules"], "node_modules", True),
        (["docs", "!docs/keep.md"], "docs", False),
        (["other", "docs", "!docs/keep.md"], "other", True),
        (["docs", "!**/keep.md"], "docs", False),
        (["a", "!a/b/c.txt"], "a/b", False),
        (["a", "!a/b/c.txt"], "a/x", True),
    ],
)
def test_an_ignored_directory_is_skipped_unless_a_pattern_reincludes_below(
    patterns: list[str], directory: str, prunable: bool
) -> None:
    ignore = _Dockerignore(patterns)
    assert ignore.matches(directory)
    assert (not ignore.may_include_below(directory)) is prunable
