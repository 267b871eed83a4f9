"""Code errors: the one-line summary of an exception or of a program's traceback output,
file and line in the project first, the error page, and the error file devstack reads."""

from __future__ import annotations

import contextlib
import html
import importlib
import os
import re
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass


try:  # imported as devstack.programs.* (tests, type checker)
    from .ds_runner import PROGRAMS_DIR, log
except ImportError:  # run as a script: this folder is sys.path[0]
    from ds_runner import PROGRAMS_DIR, log  # type: ignore[no-redef,import-not-found]


IMPORTLIB_DIR = os.path.dirname(os.path.realpath(importlib.__file__))


SUMMARY_MAX = 300  # characters of the one-line summary


FRAMES_SHOWN = 12  # last frames of a traceback on the error page


class Project:
    """Which files are the project's own code (watched dirs, or the app dir outside a venv)."""

    def __init__(self, app_dir: Path, watch: Sequence[Path]) -> None:
        self.app_dir = os.path.realpath(app_dir)
        self.roots = [os.path.realpath(w) for w in watch]

    def owns(self, filename: str | None) -> bool:
        """True for a file of the project (never for stdlib or installed packages)."""
        if not filename or filename.startswith("<"):
            return False
        path = os.path.realpath(filename)
        if any(_under(path, root) for root in self.roots):
            return True
        installed = f"{os.sep}site-packages{os.sep}" in path or f"{os.sep}dist-packages" in path
        return _under(path, self.app_dir) and not installed

    def display(self, filename: str) -> str:
        """A file name relative to the app dir when it is inside it."""
        path = os.path.realpath(filename)
        if _under(path, self.app_dir):
            return os.path.relpath(path, self.app_dir)
        return filename


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


@dataclass(frozen=True)
class CodeError:
    """A code error, described for a log, a header, a file and a page."""

    summary: str  # one line: "SyntaxError: invalid syntax (service/routes/meta.py:74)"
    kind: str  # the exception's class name
    details: str  # the traceback (last frames), plain text


def one_line(text: str, limit: int = SUMMARY_MAX) -> str:
    """Collapse whitespace (newlines included) and cut to ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def describe(exc: BaseException, project: Project) -> CodeError:
    """Summarise an exception: class, message, and the innermost project file:line."""
    kind = type(exc).__name__
    if isinstance(exc, SyntaxError):
        message = exc.msg or ""
        location = f"{project.display(exc.filename)}:{exc.lineno}" if exc.filename else ""
    else:
        message = str(exc)
        location = _innermost(traceback.extract_tb(exc.__traceback__), project)
    summary = f"{kind}: {message}" if message.strip() else kind
    if location:
        summary = f"{one_line(summary, SUMMARY_MAX - len(location) - 3)} ({location})"
    te = traceback.TracebackException.from_exception(exc)
    _trim(te, set())
    return CodeError(summary=one_line(summary), kind=kind, details="".join(te.format()))


def _machinery(filename: str) -> bool:
    """Frames of devstack's programs and of importlib: noise on the error page."""
    if filename.startswith("<frozen "):
        return True
    path = os.path.realpath(filename)
    return os.path.dirname(path) in {PROGRAMS_DIR, IMPORTLIB_DIR}


def _innermost(frames: traceback.StackSummary, project: Project) -> str:
    """file:line of the innermost project frame (else the innermost frame not ours)."""
    candidates = [f for f in frames if not _machinery(f.filename)]
    for frame in reversed(candidates):
        if project.owns(frame.filename):
            return f"{project.display(frame.filename)}:{frame.lineno}"
    if candidates:
        frame = candidates[-1]
        return f"{project.display(frame.filename)}:{frame.lineno}"
    return ""


def _trim(te: traceback.TracebackException, seen: set[int]) -> None:
    """Drop devserver's and importlib's frames, keep the last ones (chained ones too)."""
    if id(te) in seen:
        return
    seen.add(id(te))
    kept = [f for f in te.stack if not _machinery(f.filename)]
    te.stack = traceback.StackSummary.from_list(kept[-FRAMES_SHOWN:])
    for chained in (te.__cause__, te.__context__):
        if chained is not None:
            _trim(chained, seen)


_FRAME_LINE = re.compile(r'^\s+File "(?P<file>[^"]+)", line (?P<line>\d+)')


_EXCEPTION_LINE = re.compile(r"^(?P<kind>[A-Za-z_][\w.]*)(?::\s?(?P<message>.*))?$")


def summarize_output(lines: Sequence[str], project: Project) -> str | None:
    """The one-line summary of the last Python traceback in a command's output, if any."""
    starts = [i for i, line in enumerate(lines) if "Traceback (most recent call last)" in line]
    if not starts:
        return None
    frames: list[tuple[str, str]] = []
    for line in lines[starts[-1] + 1 :]:
        match = _FRAME_LINE.match(line)
        if match:
            frames.append((match["file"], match["line"]))
            continue
        if not line.strip() or line[0].isspace():
            continue  # source lines, carets
        exc_match = _EXCEPTION_LINE.match(line.strip())
        if exc_match is None:
            continue
        kind = exc_match["kind"].rsplit(".", 1)[-1]
        message = (exc_match["message"] or "").strip()
        summary = f"{kind}: {message}" if message else kind
        located = [f for f in frames if project.owns(f[0])] or frames
        if located:
            file, lineno = located[-1]
            where = f"{project.display(file)}:{lineno}"
            summary = f"{one_line(summary, SUMMARY_MAX - len(where) - 3)} ({where})"
        return one_line(summary)
    return None


class ErrorFile:
    """The one-line summary of the current code error, for tools outside (e.g. `status`)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.current: str | None = None

    def set(self, summary: str) -> None:
        """Write ``summary`` atomically (no reader sees half a line)."""
        self.current = summary
        if self.path is None:
            return
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        try:
            tmp.write_text(summary + "\n", encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError as exc:
            log(f"cannot write {self.path}: {exc}")

    def clear(self) -> None:
        """Remove the file: the code works."""
        self.current = None
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()


def render_error_page(error: CodeError, show_traceback: bool, as_html: bool) -> tuple[bytes, str]:
    """The 503 page: plain text, or HTML for browsers; details only with tracebacks on."""
    title = "503 Service Unavailable: the app cannot start"
    if not show_traceback:
        text = f"{title} ({error.kind}). See the server's log.\n"
        if as_html:
            page = (
                f"<!doctype html><meta charset=utf-8><title>503</title><h1>{html.escape(text)}</h1>"
            )
            return page.encode(), "text/html; charset=utf-8"
        return text.encode(), "text/plain; charset=utf-8"
    hint = "Fix the code and save: the server reloads by itself."
    if as_html:
        page = (
            "<!doctype html><html><head><meta charset=utf-8>"
            f"<title>503 {html.escape(error.kind)}</title>"
            "<style>body{font-family:sans-serif;margin:2em}"
            "pre{background:#f6f6f6;padding:1em;overflow:auto}</style></head><body>"
            f"<h1>{html.escape(title)}</h1><p><strong>{html.escape(error.summary)}</strong></p>"
            f"<pre>{html.escape(error.details)}</pre><p>{html.escape(hint)}</p></body></html>"
        )
        return page.encode(), "text/html; charset=utf-8"
    text = f"{title}\n\n{error.summary}\n\n{error.details}\n{hint}\n"
    return text.encode(), "text/plain; charset=utf-8"
