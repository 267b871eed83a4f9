"""Which files of the build context the image is built from: the sources of the Dockerfile's
COPY/ADD instructions (every stage; `--from=` copies read another image, not the context),
after .dockerignore, plus the Dockerfile and .dockerignore themselves.

A source that names the whole context (`COPY . .`) or that cannot be resolved without running
the build (`COPY $SRC /app`, a heredoc, a quoted path) makes every file of the context an
input, as before; `fallback` then says why, once (the first such line)."""

from __future__ import annotations

import json
import os
import posixpath
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devstack.converge.cachedir import CACHE_DIR as CACHE_DIR  # never an input

DOCKERIGNORE = ".dockerignore"
_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_REMOTE = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*://|git@)")
_MAGIC = re.compile(r"[*?\[]")
_UNRESOLVABLE = re.compile(r"[$\"'\\]")  # variables, quotes, escapes: the builder's business


@dataclass(frozen=True)
class DockerfileSources:
    """The context paths (normalized, maybe globs) that the Dockerfile's COPY/ADD read;
    `fallback` is non-empty when the whole context must count instead, and says why."""

    sources: tuple[str, ...]
    fallback: str = ""


@dataclass(frozen=True)
class BuildInputs:
    """The context files (relative POSIX paths, sorted) that the build reads and is sent."""

    files: tuple[str, ...]
    fallback: str = ""

    @property
    def whole_context(self) -> bool:
        """True when the Dockerfile's inputs could not be narrowed down (see `fallback`)."""
        return bool(self.fallback)


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """(first line number, instruction text) with continuations joined and comments dropped,
    as Docker's parser does (the `escape` parser directive is honoured)."""
    escape = "\\"
    lines = text.splitlines()
    start = 0
    while start < len(lines):  # parser directives: only at the very top
        match = _DIRECTIVE.match(lines[start])
        if not match:
            break
        if match.group(1).lower() == "escape" and match.group(2) in {"\\", "`"}:
            escape = match.group(2)
        start += 1
    continuation = re.compile(re.escape(escape) + r"[ \t]*$")
    parts: list[str] = []
    first = 0
    for number, line in enumerate(lines[start:], start=start + 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue  # blank and comment lines, also inside a continuation
        if not parts:
            first = number
        joined = continuation.search(line)
        if joined:
            parts.append(line[: joined.start()])
            continue
        parts.append(line)
        yield first, "".join(parts).strip()
        parts = []
    if parts:
        yield first, "".join(parts).strip()


def _split_flags(rest: str) -> tuple[set[str], str]:
    """Leading `--name[=value]` words (Docker's builder flags) and what follows them."""
    flags: set[str] = set()
    while True:
        rest = rest.lstrip()
        match = re.match(r"--(\S*)", rest)
        if not match:
            return flags, rest
        rest = rest[match.end() :]
        if not match.group(1):  # a bare `--` ends the flags
            return flags, rest
        flags.add(match.group(1).partition("=")[0].lower())


def _arguments(rest: str) -> list[str]:
    """JSON-array form when it parses as a list of strings, else whitespace-separated words
    (Docker's rule: a malformed array is taken as the shell form)."""
    if rest.startswith("["):
        try:
            value: Any = json.loads(rest)
        except ValueError:
            value = None
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return list(value)
    return rest.split()


def parse_sources(text: str, dockerfile: str = "Dockerfile") -> DockerfileSources:
    """The context sources of every COPY/ADD of a Dockerfile (all stages, in order, no
    duplicates). Remote ADD sources (URLs, git) are not context files and are skipped."""
    sources: list[str] = []
    fallback = ""
    for number, instruction in _logical_lines(text):
        keyword, *rest_of_line = re.split(r"\s+", instruction, maxsplit=1)
        if keyword.upper() not in {"COPY", "ADD"} or not rest_of_line:
            continue
        rest = rest_of_line[0]
        flags, rest = _split_flags(rest)
        if "from" in flags:
            continue  # another stage or image: not the build context
        arguments = _arguments(rest)
        for source in arguments[:-1]:  # the last one is the destination
            if _REMOTE.match(source):
                continue
            where = f"{dockerfile} line {number} (`{instruction[:80]}`)"
            if source.startswith("<<") or _UNRESOLVABLE.search(source):
                fallback = fallback or (
                    f"cannot tell which files {where} reads: the whole build context"
                    " (after .dockerignore) is hashed and sent"
                )
                continue
            path = posixpath.normpath("/" + source).lstrip("/")
            if not path:
                fallback = fallback or (
                    f"{where} copies the whole build context: every file not in"
                    " .dockerignore is a build input"
                )
                continue
            if path not in sources:
                sources.append(path)
    return DockerfileSources(tuple(sources), fallback)


def _segment_regex(segment: str) -> re.Pattern[str]:
    """Go's filepath.Match for one path segment: `*`, `?` and `[...]` (with `^` negation)."""
    out: list[str] = []
    i = 0
    while i < len(segment):
        char = segment[i]
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[" and segment.find("]", i + 2) > 0:
            end = segment.find("]", i + 2)
            body = segment[i + 1 : end]
            negate = body.startswith("^")
            body = body[1:] if negate else body
            escaped = "".join(c if c.isalnum() or c == "-" else "\\" + c for c in body)
            out.append(f"[{'^' if negate else ''}{escaped}]")
            i = end
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile("".join(out))


def _normalize(pattern: str) -> list[str]:
    """A .dockerignore pattern cleaned into path segments as Docker cleans it (Go's
    filepath.Clean): surrounding spaces, empty and `.` segments go, `..` drops the one before."""
    segments: list[str] = []
    for part in pattern.strip().split("/"):
        if part == "..":
            del segments[-1:]
        elif part not in ("", "."):
            segments.append(part)
    return segments


def _pattern_regex(segments: list[str]) -> str:
    """The regular expression of a cleaned pattern: each segment as Go's filepath.Match, and a
    `**` segment for any number of directories (all that follows, at the end)."""
    parts = []
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == "**":
            parts.append(".*" if last else "(?:.*/)?")
        else:
            parts.append(_segment_regex(segment).pattern + ("" if last else "/"))
    return "".join(parts)


class _Dockerignore:
    """.dockerignore patterns with Docker's meaning (moby's patternmatcher): the last pattern
    that matches a path or one of its parent directories decides; `!` re-includes. Runs of
    patterns of the same sign are one regular expression, so a path costs a few matches.
    Matched with the standard library: docker-py's matcher would import docker-py and requests
    (about 0.1 s) on every `up`."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.rules: list[tuple[bool, list[str]]] = []  # (is a `!` pattern, its segments)
        for raw in patterns:
            exclusion = raw.startswith("!")
            segments = _normalize(raw[1:] if exclusion else raw)
            if segments:
                self.rules.append((exclusion, segments))
        runs: list[tuple[bool, list[str]]] = []
        for exclusion, segments in self.rules:
            body = _pattern_regex(segments)
            if runs and runs[-1][0] == exclusion:
                runs[-1][1].append(body)
            else:
                runs.append((exclusion, [body]))
        self.runs = [
            (exclusion, re.compile("(?:" + "|".join(bodies) + r")(?:/.*)?\Z", re.DOTALL))
            for exclusion, bodies in reversed(runs)
        ]

    def matches(self, rel: str) -> bool:
        """True when `rel` is excluded from the context."""
        for exclusion, regex in self.runs:
            if regex.match(rel):
                return not exclusion
        return False

    def may_include_below(self, rel: str) -> bool:
        """Whether some `!pattern` could re-include a path under directory `rel`."""
        parts = rel.split("/")
        for exclusion, segments in self.rules:
            if not exclusion:
                continue
            for index, part in enumerate(parts):
                if index >= len(segments) or "**" in segments[index]:
                    return True  # it matches this directory, or may match anything below
                if not _segment_regex(segments[index]).fullmatch(part):
                    break
            else:
                return True  # the pattern goes on below this directory
        return False


class _Context:
    """A build context directory seen through its .dockerignore."""

    def __init__(self, root: Path, patterns: list[str], never: Iterable[str]) -> None:
        self.root = root
        self.dockerignore = _Dockerignore(patterns)
        self.never = frozenset(never)

    def ignored(self, rel: str) -> bool:
        return rel in self.never or self.dockerignore.matches(rel)

    def prunable(self, rel: str) -> bool:
        """An ignored directory under which no `!pattern` can bring a file back."""
        if rel in self.never:
            return True
        return self.dockerignore.matches(rel) and not self.dockerignore.may_include_below(rel)

    def files_under(self, rel: str) -> Iterator[str]:
        """Files (and symlinks) at `rel` or below it that the context holds."""
        path = self.root / rel
        if path.is_symlink() or path.is_file():
            if not self.ignored(rel):
                yield rel
            return
        if not path.is_dir() or (rel and self.prunable(rel)):
            return
        try:
            entries = sorted(os.scandir(path), key=lambda e: e.name)
        except OSError:
            return
        for entry in entries:
            child = f"{rel}/{entry.name}" if rel else entry.name
            if entry.is_dir(follow_symlinks=False):
                yield from self.files_under(child)
            elif (entry.is_file(follow_symlinks=False) or entry.is_symlink()) and not (
                self.ignored(child)
            ):
                yield child

    def expand(self, source: str) -> Iterator[str]:
        """Paths that a source names: itself, or what its glob segments match."""
        candidates = [""]
        for segment in source.split("/"):
            found: list[str] = []
            for base in candidates:
                if not _MAGIC.search(segment):
                    found.append(f"{base}/{segment}" if base else segment)
                    continue
                regex = _segment_regex(segment)
                try:
                    names = sorted(os.listdir(self.root / base))
                except OSError:
                    continue
                for name in names:
                    if regex.fullmatch(name):
                        found.append(f"{base}/{name}" if base else name)
            candidates = found
        return iter(candidates)


def read_dockerignore(root: Path) -> list[str]:
    """The .dockerignore patterns of a context (none when it has no such file)."""
    path = root / DOCKERIGNORE
    if not path.is_file():
        return []
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def resolve_inputs(
    root: Path, dockerfile: str = "Dockerfile", never: Iterable[str] = ()
) -> BuildInputs:
    """The files of context `root` that the build of `dockerfile` reads: its COPY/ADD sources
    after .dockerignore, plus the Dockerfile and .dockerignore (always sent, as docker does).
    Only the sources are walked: a large tree the Dockerfile never names costs nothing.
    `never` names paths that are never inputs (devstack's own injected or cached files)."""
    dockerfile = posixpath.normpath(dockerfile)
    parsed = parse_sources((root / dockerfile).read_text(), dockerfile)
    context = _Context(root, read_dockerignore(root), {CACHE_DIR, *never})
    sources = ("",) if parsed.fallback else parsed.sources
    files: set[str] = set()
    for source in sources:
        for path in context.expand(source) if source else [""]:
            files.update(context.files_under(path))
    for special in (dockerfile, DOCKERIGNORE):
        if (root / special).is_file():
            files.add(special)
    return BuildInputs(tuple(sorted(files)), parsed.fallback)
