"""devserver: a development server supervisor that reloads at the speed of your code.

Self-contained (stdlib + uvicorn + watchfiles, Python 3.11+): it is bind-mounted into the API
container and run as a script, so it imports nothing from devstack. Two modes:

``devserver.py service.main:app --host 0.0.0.0 --port 8000 --watch /app/service``
    Binds the listening socket once (requests queue in the kernel during a reload instead of
    being refused), forks a fresh uvicorn server per code change (the old one is stopped
    gracefully first), and imports the heavy third-party modules once in the supervisor: the
    first server reports the non-project modules it imported and the supervisor imports them,
    so later servers only import the project's own code. The supervisor never imports the
    project's code. While the code cannot be imported or the app cannot start (SyntaxError,
    ImportError, an exception in the lifespan), every HTTP request gets an immediate 503 with
    the exception, its file and line and the last frames (``--no-traceback`` hides them), and
    the header ``X-Devstack-Code-Error: <one-line summary>``.

``devserver.py --command 'celery -A service.worker worker' --watch /app/service``
    Runs the command, restarts it on change; when it exits with an error (a Python traceback
    or a non-zero code) the summary is recorded. A Python program of this interpreter
    (``python -m MOD ...``, ``python SCRIPT ...`` or a console script such as ``celery``) runs
    in a forked child with runpy, so what the supervisor imported (``--preload``, or what the
    process that runs the supervisor preloaded: devstack's gate.py) is not imported again on
    each restart; any other command is exec'd.

In both modes the one-line summary (``SyntaxError: ... (service/routes/meta.py:74)``) is
written to ``--error-file`` while the code is broken and removed once it works again.
SIGTERM/SIGINT stop the child gracefully and exit 0. Never writes bytecode.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import ctypes
import errno
import html
import importlib
import json
import os
import re
import runpy
import select
import selectors
import shlex
import shutil
import signal
import socket
import sys
import time
import traceback
import warnings
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import uvicorn

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

THIS_FILE = os.path.realpath(__file__)
IMPORTLIB_DIR = os.path.dirname(os.path.realpath(importlib.__file__))
DEFAULT_ERROR_FILE = "/tmp/devstack-code-error"
ERROR_HEADER = "X-Devstack-Code-Error"
SUMMARY_MAX = 300  # characters of the one-line summary
FRAMES_SHOWN = 12  # last frames of a traceback on the error page
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
MTIME_SLACK = 0.02  # seconds a file's mtime may lag behind time.time()
WATCHER_TICK_MS = 250  # the watcher's first idle tick triggers its catch-up scan
ACCEPT_SETTLE_TURNS = 5  # event-loop turns a stopping server gives just-accepted connections
FRESH_CONNECTION_GRACE = 0.2  # seconds a stopping server waits for a new connection's request
PR_SET_PDEATHSIG = 1
# Modules never imported ahead of time: entry points and modules with visible side effects.
NEVER_PRELOAD = frozenset({"__main__", "__mp_main__", "antigravity", "this", "idlelib"})


def log(message: str) -> None:
    """One line on stderr, in uvicorn's layout so it reads well in the container's log."""
    sys.stderr.write(f"INFO:     devserver: {message}\n")
    sys.stderr.flush()


# --------------------------------------------------------------------------------------------
# Options


@dataclass(frozen=True)
class Options:
    """Everything the command line says."""

    app: str | None
    command: tuple[str, ...]
    host: str
    port: int
    app_dir: Path
    watch: tuple[Path, ...]
    watch_ext: tuple[str, ...]
    factory: bool
    preload: tuple[str, ...]
    auto_preload: bool
    show_traceback: bool
    error_file: Path | None
    log_level: str
    access_log: bool
    graceful_timeout: float
    reload_delay: float
    ready_pattern: re.Pattern[str] | None
    ready_after: float


def parse_args(argv: Sequence[str]) -> Options:
    """Read the command line (exit 2 with a one-line message on bad input)."""
    parser = argparse.ArgumentParser(
        prog="devserver.py",
        description="Development server supervisor: preloads third-party modules once, forks "
        "a fresh server per code change, and answers 503 with the error while the code is "
        "broken.",
    )
    parser.add_argument("app", nargs="?", help="ASGI app as MODULE:ATTRIBUTE (HTTP mode)")
    parser.add_argument("--command", help="run this command instead of an HTTP server")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 = any)")
    parser.add_argument(
        "--app-dir", default=".", help="directory put on sys.path in the server (default .)"
    )
    parser.add_argument(
        "--watch",
        action="append",
        default=[],
        metavar="DIR",
        help="directory to watch for changes (repeatable; default: the app dir)",
    )
    parser.add_argument(
        "--watch-ext",
        default="",
        metavar=".EXT,...",
        help="extensions that also trigger a reload besides .py (e.g. .html,.sql)",
    )
    parser.add_argument("--factory", action="store_true", help="APP is a factory: call it")
    parser.add_argument(
        "--preload",
        default="",
        metavar="MOD,...",
        help="modules the supervisor imports at start, besides those discovered",
    )
    parser.add_argument(
        "--no-auto-preload",
        dest="auto_preload",
        action="store_false",
        help="do not import the modules the first server reports",
    )
    parser.add_argument(
        "--no-traceback",
        dest="show_traceback",
        action="store_false",
        help="the 503 page and header show no exception details (production-like)",
    )
    parser.add_argument(
        "--error-file",
        default=DEFAULT_ERROR_FILE,
        help=f"where the one-line summary of a code error is kept (default "
        f"{DEFAULT_ERROR_FILE}; '' = none)",
    )
    parser.add_argument("--log-level", default="info", help="uvicorn's log level")
    parser.add_argument(
        "--no-access-log", dest="access_log", action="store_false", help="no access log"
    )
    parser.add_argument(
        "--graceful-timeout",
        type=float,
        default=5.0,
        help="seconds a stopping server may take to finish requests (default 5)",
    )
    parser.add_argument(
        "--reload-delay",
        type=float,
        default=0.03,
        help="seconds the tree must stay quiet before a reload (default 0.03)",
    )
    parser.add_argument(
        "--ready-pattern",
        help="--command: regex of an output line saying the command is ready",
    )
    parser.add_argument(
        "--ready-after",
        type=float,
        default=1.0,
        help="--command without --ready-pattern: seconds alive that count as ready",
    )
    ns = parser.parse_args(argv)
    if bool(ns.app) == bool(ns.command):
        parser.error("give either APP (MODULE:ATTRIBUTE) or --command, not both")
    if ns.app and ":" not in ns.app:
        parser.error(f"APP must be MODULE:ATTRIBUTE, got {ns.app!r}")
    command: tuple[str, ...] = tuple(shlex.split(ns.command)) if ns.command else ()
    if ns.command and not command:
        parser.error("--command is empty")
    pattern = None
    if ns.ready_pattern:
        try:
            pattern = re.compile(ns.ready_pattern)
        except re.error as exc:
            parser.error(f"--ready-pattern is not a regular expression: {exc}")
    app_dir = Path(ns.app_dir).resolve()
    watch = tuple(Path(w).resolve() for w in ns.watch) or (app_dir,)
    for directory in watch:
        if not directory.is_dir():
            parser.error(f"--watch {directory}: not a directory")
    return Options(
        app=ns.app,
        command=command,
        host=ns.host,
        port=ns.port,
        app_dir=app_dir,
        watch=watch,
        watch_ext=tuple(e if e.startswith(".") else f".{e}" for e in _split(ns.watch_ext)),
        factory=ns.factory,
        preload=tuple(_split(ns.preload)),
        auto_preload=ns.auto_preload,
        show_traceback=ns.show_traceback,
        error_file=Path(ns.error_file) if ns.error_file else None,
        log_level=ns.log_level,
        access_log=ns.access_log,
        graceful_timeout=ns.graceful_timeout,
        reload_delay=ns.reload_delay,
        ready_pattern=pattern,
        ready_after=ns.ready_after,
    )


def _split(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


# --------------------------------------------------------------------------------------------
# What belongs to the project, and how a code error is described


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
    """Frames of devserver itself and of importlib: noise on the error page."""
    if filename.startswith("<frozen "):
        return True
    path = os.path.realpath(filename)
    return path == THIS_FILE or os.path.dirname(path) == IMPORTLIB_DIR


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


# --------------------------------------------------------------------------------------------
# A command that is a Python program of this interpreter runs in a forked child


def _is_this_python(word: str) -> bool:
    """Whether `word` (``python``, ``/opt/venv/bin/python3``) is this interpreter: the same
    file in the same directory (a venv's python links to the base one's file)."""
    path = shutil.which(word)
    if path is None:
        return False
    try:
        same = os.path.samefile(path, sys.executable)
    except OSError:
        return False
    return same and os.path.dirname(os.path.abspath(path)) == os.path.dirname(sys.executable)


def _script_interpreter(path: str) -> str | None:
    """The interpreter a ``#!`` line names (``#!/usr/bin/env python3`` -> ``python3``)."""
    try:
        with open(path, "rb") as handle:
            first = handle.readline(512)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    words = first[2:].decode("utf-8", "replace").split()
    if words and os.path.basename(words[0]) == "env":
        words = words[1:]
    return words[0] if words else None


def python_program(command: Sequence[str]) -> tuple[str, str, list[str]] | None:
    """``("module", MOD, argv)`` or ``("path", SCRIPT, argv)`` when `command` runs a program
    of this interpreter with no interpreter options (``python -m MOD``, ``python SCRIPT``, a
    console script whose ``#!`` names this interpreter); None when it must be exec'd."""
    if not command:
        return None
    if _is_this_python(command[0]):
        if len(command) >= 3 and command[1] == "-m":
            return "module", command[2], [command[2], *command[3:]]
        if len(command) >= 2 and not command[1].startswith("-"):
            return "path", command[1], list(command[1:])
        return None
    script = shutil.which(command[0])
    interpreter = _script_interpreter(script) if script else None
    if script and interpreter and _is_this_python(interpreter):
        return "path", script, [script, *command[1:]]
    return None


def run_python_program(kind: str, target: str, argv: list[str]) -> int:
    """Run a program as its interpreter would (sys.argv, sys.path[0], ``__main__``) in this
    process; its exit code (an uncaught exception prints its traceback: exit 1)."""
    sys.argv = argv
    sys.path.insert(0, os.getcwd() if kind == "module" else os.path.dirname(target))
    try:
        if kind == "module":
            runpy.run_module(target, run_name="__main__", alter_sys=True)
        else:
            runpy.run_path(target, run_name="__main__")
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        sys.stderr.write(f"{exc.code}\n")
        return 1
    except KeyboardInterrupt:
        return 130
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


# --------------------------------------------------------------------------------------------
# Small process helpers


def _die_with_parent(parent: int) -> None:
    """Linux: get SIGTERM when the supervisor dies, so no server outlives it."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


def _reset_signals_in_child() -> None:
    """A forked child starts with default dispositions and no wakeup fd of the supervisor."""
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)


@contextlib.contextmanager
def _signals_blocked() -> Iterator[None]:
    """Block stop signals and SIGCHLD around fork so none reaches a half-set-up child."""
    blocked = {*STOP_SIGNALS, signal.SIGCHLD}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _write_all(fd: int, data: bytes) -> None:
    """Write everything, waiting while a non-blocking fd is full."""
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            select.select([], [fd], [], 1.0)
            continue
        view = view[written:]


def _read_available(fd: int) -> bytes | None:
    """What a non-blocking pipe holds now; None at end of file."""
    chunks: list[bytes] = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return b"".join(chunks)
        except OSError as exc:
            if exc.errno == errno.EINTR:
                continue
            raise
        if not chunk:
            return b"".join(chunks) if chunks else None
        chunks.append(chunk)


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


# --------------------------------------------------------------------------------------------
# In a server process: the app, wrapped so that code errors become a 503 page


class Reporter:
    """Lines of JSON from a server process to the supervisor."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def send(self, event: str, **data: Any) -> None:
        """Tell the supervisor about ``event`` (ready, error, modules)."""
        with contextlib.suppress(OSError):
            _write_all(self.fd, (json.dumps({"event": event, **data}) + "\n").encode())


class DevApp:
    """ASGI wrapper: runs the app, or answers every request with the code error's 503 page.

    It drives the app's lifespan itself, so an exception raised while the app starts is
    caught here (uvicorn would exit) and turns into the error page.
    """

    def __init__(
        self,
        app: ASGIApp | None,
        error: CodeError | None,
        project: Project,
        show_traceback: bool,
        on_error: Callable[[CodeError], None],
    ) -> None:
        self.app = app
        self.error = error
        self.project = project
        self.show_traceback = show_traceback
        self.on_error = on_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI entry point."""
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
        elif self.error is not None or self.app is None:
            await self._error_response(scope, send)
        else:
            await self.app(scope, receive, send)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        import asyncio

        if self.app is None or self.error is not None:
            await _trivial_lifespan(receive, send, startup_received=False)
            return
        to_app: asyncio.Queue[Message] = asyncio.Queue()
        started: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        stopped = asyncio.Event()
        asked = False

        async def app_receive() -> Message:
            nonlocal asked
            asked = True
            return await to_app.get()

        async def app_send(message: Message) -> None:
            kind = message["type"]
            if kind == "lifespan.startup.complete" and not started.done():
                started.set_result(None)
            elif kind == "lifespan.startup.failed" and not started.done():
                started.set_result(str(message.get("message", "")) or "startup failed")
            elif kind in {"lifespan.shutdown.complete", "lifespan.shutdown.failed"}:
                stopped.set()

        task = asyncio.ensure_future(self.app(scope, app_receive, app_send))
        await to_app.put(await receive())  # lifespan.startup
        pending: set[asyncio.Future[Any]] = {task, started}
        await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        if not started.done() and task.done():
            # Finished or raised without a word: an app without lifespan support is fine.
            exc = task.exception()
            if exc is None or not asked:
                await _trivial_lifespan(receive, send, startup_received=True)
                return
            self._failed(exc)
        elif started.result() is not None:
            await asyncio.wait({task}, timeout=1.0)
            exc = task.exception() if task.done() else None
            if exc is not None:
                self._failed(exc)
            else:
                self._failed_message(started.result() or "startup failed")
        if self.error is not None:
            await _trivial_lifespan(receive, send, startup_received=True)  # serve the 503 page
            return
        await send({"type": "lifespan.startup.complete"})
        message = await receive()  # lifespan.shutdown
        await to_app.put(message)
        waiter = asyncio.ensure_future(stopped.wait())
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if task.done() and not task.cancelled() and task.exception() is not None:
            log(f"the app's lifespan shutdown failed: {task.exception()!r}")
        await send({"type": "lifespan.shutdown.complete"})

    def _failed(self, exc: BaseException) -> None:
        self.error = describe(exc, self.project)
        sys.stderr.write(f"ERROR:    devserver: the app's startup failed:\n{self.error.details}")
        sys.stderr.flush()
        self.on_error(self.error)

    def _failed_message(self, text: str) -> None:
        lines = [line for line in text.splitlines() if line.strip()]
        summary = one_line(lines[-1] if lines else text)
        self.error = CodeError(summary=summary, kind="LifespanError", details=text)
        log(f"the app's lifespan startup failed: {summary}")
        self.on_error(self.error)

    async def _error_response(self, scope: Scope, send: Send) -> None:
        error = self.error or CodeError("no application", "RuntimeError", "")
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1011})
            return
        if scope["type"] != "http":
            return
        accept = b""
        for name, value in scope.get("headers", []):
            if name.lower() == b"accept":
                accept += value
        wants_html = b"text/html" in accept
        body, content_type = render_error_page(error, self.show_traceback, wants_html)
        header = error.summary if self.show_traceback else error.kind
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    (b"content-type", content_type.encode()),
                    (b"content-length", str(len(body)).encode()),
                    (b"cache-control", b"no-store"),
                    (b"retry-after", b"1"),
                    (ERROR_HEADER.lower().encode(), _header_value(header)),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


async def _trivial_lifespan(receive: Receive, send: Send, *, startup_received: bool) -> None:
    """Answer the lifespan protocol for an app that has none (or cannot start)."""
    if startup_received:
        await send({"type": "lifespan.startup.complete"})
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def _header_value(text: str) -> bytes:
    return re.sub(r"[\x00-\x1f\x7f]", " ", text).encode("ascii", "backslashreplace")


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


def load_app(spec: str, factory: bool) -> ASGIApp:
    """Import MODULE:ATTRIBUTE (and call it for a factory); exceptions propagate."""
    module_name, _, attribute = spec.partition(":")
    module = importlib.import_module(module_name)
    target: Any = module
    for part in attribute.split("."):
        target = getattr(target, part)
    if factory:
        target = target()
    if not callable(target):
        raise TypeError(f"{spec} is not an ASGI application (not callable)")
    app: ASGIApp = target
    return app


def foreign_modules(project: Project, known: set[str]) -> list[str]:
    """Names of loaded modules that are not the project's nor in ``known`` (import order)."""
    owned_tops: set[str] = set()
    names: list[str] = []
    for name, module in list(sys.modules.items()):
        if name in known:
            continue
        filename = getattr(module, "__file__", None)
        paths = list(getattr(module, "__path__", None) or [])
        if project.owns(filename) or any(project.owns(p) for p in paths):
            owned_tops.add(name.partition(".")[0])
            continue
        names.append(name)
    return [
        n
        for n in names
        if n.partition(".")[0] not in owned_tops and n.partition(".")[0] not in NEVER_PRELOAD
    ]


def _tracking_protocol(base: type[Any]) -> type[Any]:
    """uvicorn's HTTP protocol, marking connections that have not sent a byte yet."""
    if getattr(base, "devserver_tracking", False):
        return base

    def data_received(self: Any, data: bytes) -> None:
        self.devserver_fresh = False
        base.data_received(self, data)

    namespace = {"devserver_tracking": True, "devserver_fresh": True}
    return type(base.__name__, (base,), {**namespace, "data_received": data_received})


def _make_server(config: uvicorn.Config, on_started: Callable[[], None]) -> uvicorn.Server:
    """A uvicorn server that notices a stop signal at once and skips idle grace periods."""
    import asyncio

    import uvicorn

    class DevServer(uvicorn.Server):
        wake: asyncio.Event | None = None
        loop: asyncio.AbstractEventLoop | None = None

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            self.config.http_protocol_class = _tracking_protocol(self.config.http_protocol_class)
            await super().startup(sockets=sockets)
            if self.started and not self.should_exit:
                on_started()

        async def main_loop(self) -> None:
            # uvicorn polls should_exit every 0.1 s; wake up on the signal instead.
            self.loop = asyncio.get_running_loop()
            self.wake = asyncio.Event()
            counter = 0
            should_exit = await self.on_tick(counter)
            while not should_exit:
                counter = (counter + 1) % 864000
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), 0.1)
                should_exit = await self.on_tick(counter)

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            super().handle_exit(sig, frame)
            loop, wake = self.loop, self.wake
            if loop is not None and wake is not None and not loop.is_closed():
                loop.call_soon_threadsafe(wake.set)

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            # Stop accepting first: new connections wait in the kernel's backlog of the shared
            # socket for the next server. Connections accepted just before get a few loop
            # turns to be set up (asyncio resets one whose transport is made after
            # Server.close(), so the reader goes first and close() after), and a short grace
            # to send their request (uvicorn closes one that has not), so they are answered.
            loop = asyncio.get_running_loop()
            grace_until = loop.time() + FRESH_CONNECTION_GRACE
            for server in self.servers:
                for listener in server.sockets:
                    with contextlib.suppress(Exception):  # e.g. an event loop without it
                        loop.remove_reader(listener.fileno())
            for _ in range(ACCEPT_SETTLE_TURNS):
                await asyncio.sleep(0)
            for server in self.servers:
                server.close()
            while loop.time() < grace_until and any(
                getattr(c, "devserver_fresh", False) for c in self.server_state.connections
            ):
                await asyncio.sleep(0.002)
            if self.server_state.connections or self.server_state.tasks:
                await super().shutdown(sockets=sockets)
                return
            # Nothing in flight: skip uvicorn's fixed 0.1 s grace period.
            for sock in sockets or []:
                sock.close()
            if not self.force_exit:
                await self.lifespan.shutdown()

    return DevServer(config)


def server_main(
    options: Options,
    sock: socket.socket,
    report_fd: int,
    forced: CodeError | None,
) -> int:
    """Body of a forked server process: import the app (or its error) and serve it."""
    project = Project(options.app_dir, options.watch)
    reporter = Reporter(report_fd)
    inherited = set(sys.modules)  # what the supervisor had already imported
    if str(options.app_dir) not in sys.path:
        sys.path.insert(0, str(options.app_dir))
    app: ASGIApp | None = None
    error = forced
    if error is None:
        assert options.app is not None
        try:
            app = load_app(options.app, options.factory)
        except KeyboardInterrupt:
            return 130
        except BaseException as exc:  # SystemExit too: a config error at import time
            error = describe(exc, project)
            sys.stderr.write(f"ERROR:    devserver: the app cannot be imported:\n{error.details}")
            sys.stderr.flush()
    if error is not None:
        reporter.send("error", summary=error.summary)

    def on_error(err: CodeError) -> None:
        reporter.send("error", summary=err.summary)

    def on_started() -> None:
        if dev_app.error is None:
            reporter.send("ready")
        if options.auto_preload:
            reporter.send("modules", names=foreign_modules(project, inherited))

    dev_app = DevApp(app, error, project, options.show_traceback, on_error)
    import uvicorn

    config = uvicorn.Config(
        dev_app,
        lifespan="on",
        log_level=options.log_level,
        access_log=options.access_log,
        timeout_graceful_shutdown=max(1, round(options.graceful_timeout)),
    )
    server = _make_server(config, on_started)
    server.run(sockets=[sock])
    return 0 if server.started else 3


# --------------------------------------------------------------------------------------------
# The supervisor


@dataclass
class Child:
    """A process the supervisor started."""

    pid: int
    role: str  # "server", "command" or "watcher"
    started: float = field(default_factory=time.monotonic)
    fds: dict[int, str] = field(default_factory=dict)  # fd -> "report" | "stdout" | "stderr"
    buffers: dict[int, bytes] = field(default_factory=dict)
    stopping: bool = False
    kill_at: float | None = None
    ready: bool = False
    forced_error: bool = False
    exit_code: int | None = None


class Supervisor:
    """Owns the socket, the watcher and the current child; reloads on change."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.project = Project(options.app_dir, options.watch)
        self.selector = selectors.DefaultSelector()
        self.error_file = ErrorFile(options.error_file)
        self.sock: socket.socket | None = None
        self.children: dict[int, Child] = {}
        self.current: Child | None = None
        self.watcher: Child | None = None
        self.reload_pending = False
        self.reload_started: float | None = None
        self.reload_stopped: float | None = None
        self.exiting = False
        self.preload_queue: deque[str] = deque()
        self.preload_seen: set[str] = set()
        self.preload_count = 0
        self.preload_time = 0.0
        self.output_tail: deque[str] = deque(maxlen=400)
        self.started_wall = time.time()
        self.wakeup_r, self.wakeup_w = os.pipe()
        os.set_blocking(self.wakeup_r, False)
        os.set_blocking(self.wakeup_w, False)

    # -- set-up ------------------------------------------------------------------------------

    def bind(self) -> None:
        """Bind and listen once; every server inherits this socket."""
        opts = self.options
        infos = socket.getaddrinfo(
            opts.host, opts.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        try:
            sock.bind(address)
        except OSError as exc:
            sock.close()
            message = f"devserver: cannot bind {opts.host}:{opts.port}: {exc.strerror}"
            raise SystemExit(message) from None
        sock.listen(2048)
        sock.set_inheritable(True)
        self.sock = sock
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        watched = ", ".join(str(w) for w in opts.watch)
        log(f"listening on http://{shown}:{port} (supervisor {os.getpid()}); watching {watched}")

    def install_signals(self) -> None:
        """Signals only write to the wakeup pipe; the main loop handles them."""
        signal.set_wakeup_fd(self.wakeup_w, warn_on_full_buffer=False)
        for sig in (*STOP_SIGNALS, signal.SIGCHLD):
            signal.signal(sig, _noop_handler)
        self.selector.register(self.wakeup_r, selectors.EVENT_READ, ("wakeup", None))

    def preload_now(self, names: Sequence[str]) -> None:
        """Import modules given with --preload before the first server starts."""
        for name in names:
            self.preload_queue.append(name)
        while self.preload_queue:
            self._preload_one()

    # -- children ----------------------------------------------------------------------------

    def _fork(self) -> int:
        """Fork with signals blocked; in the child, drop the supervisor's fds (0 returned)."""
        sys.stdout.flush()
        sys.stderr.flush()
        parent = os.getpid()
        with _signals_blocked():
            pid = os.fork()
            if pid == 0:
                _reset_signals_in_child()
        if pid == 0:
            _die_with_parent(parent)
            with contextlib.suppress(OSError):
                self.selector.close()
            fds = [self.wakeup_r, self.wakeup_w]
            fds += [fd for child in self.children.values() for fd in child.fds]
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
        return pid

    def start_watcher(self) -> None:
        """A forked process runs watchfiles and writes one JSON line per batch of changes."""
        import watchfiles  # noqa: F401  (imported before the fork: the watcher starts at once)

        read_fd, write_fd = os.pipe()
        pid = self._fork()
        if pid == 0:
            code = 1
            try:
                os.close(read_fd)
                if self.sock is not None:
                    self.sock.close()
                code = _watch_forever(self.options, write_fd, self.started_wall)
            except KeyboardInterrupt:
                code = 0
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        os.close(write_fd)
        os.set_blocking(read_fd, False)
        child = Child(pid=pid, role="watcher", fds={read_fd: "changes"})
        self._adopt(child)
        self.watcher = child

    def _adopt(self, child: Child) -> None:
        self.children[child.pid] = child
        for fd in child.fds:
            child.buffers[fd] = b""
            self.selector.register(fd, selectors.EVENT_READ, ("fd", (child, fd)))

    def start_server(self, forced: CodeError | None = None) -> None:
        """Fork a server process on the shared socket."""
        assert self.sock is not None
        read_fd, write_fd = os.pipe()
        pid = self._fork()
        if pid == 0:
            code = 1
            try:
                os.close(read_fd)
                code = server_main(self.options, self.sock, write_fd, forced)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except KeyboardInterrupt:  # Ctrl-C in a terminal: uvicorn re-raises it when done
                code = 0
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        os.close(write_fd)
        os.set_blocking(read_fd, False)
        child = Child(pid=pid, role="server", fds={read_fd: "report"})
        child.forced_error = forced is not None
        self._adopt(child)
        self.current = child

    def start_command(self) -> None:
        """Fork the command in its own process group, its output piped through us: a Python
        program of this interpreter runs in the child with runpy (the supervisor's imports
        are reused), anything else is exec'd."""
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
        program = python_program(self.options.command)
        pid = self._fork()
        if pid == 0:
            code = 127
            try:
                os.setpgid(0, 0)
                os.dup2(out_w, 1)
                os.dup2(err_w, 2)
                os.close(out_w)
                os.close(err_w)
                os.chdir(self.options.app_dir)
                if program is None:
                    os.execvpe(self.options.command[0], list(self.options.command), env)
                os.environ.update(env)
                code = run_python_program(*program)
                with contextlib.suppress(BaseException):
                    atexit._run_exitfuncs()  # what the interpreter does at exit (logging...)
            except BaseException as exc:
                os.write(2, f"devserver: cannot run {self.options.command[0]}: {exc}\n".encode())
            finally:
                with contextlib.suppress(BaseException):
                    sys.stdout.flush()
                    sys.stderr.flush()
                os._exit(code)
        os.close(out_w)
        os.close(err_w)
        for fd in (out_r, err_r):
            os.set_blocking(fd, False)
        child = Child(pid=pid, role="command", fds={out_r: "stdout", err_r: "stderr"})
        self.output_tail.clear()
        self._adopt(child)
        self.current = child
        how = "in a forked child" if program else "exec'd"
        log(f"started {shlex.join(self.options.command)} ({how}, pid {pid})")

    def start_current(self, forced: CodeError | None = None) -> None:
        """Start the server or the command."""
        if self.options.command:
            self.start_command()
        else:
            self.start_server(forced)

    def stop(self, child: Child, *, kill_after: float) -> None:
        """SIGTERM now, SIGKILL (the whole group for a command) after ``kill_after`` seconds."""
        if child.stopping or child.exit_code is not None:
            return
        child.stopping = True
        child.kill_at = time.monotonic() + kill_after
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signal.SIGTERM)

    def _kill_overdue(self) -> None:
        now = time.monotonic()
        for child in list(self.children.values()):
            if child.kill_at is not None and now >= child.kill_at and child.exit_code is None:
                log(f"{child.role} {child.pid} did not stop in time: killing it")
                child.kill_at = None
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    if child.role == "command":
                        os.killpg(child.pid, signal.SIGKILL)
                    else:
                        os.kill(child.pid, signal.SIGKILL)

    # -- events ------------------------------------------------------------------------------

    def _on_wakeup(self) -> None:
        data = _read_available(self.wakeup_r) or b""
        for signum in data:
            if signum in STOP_SIGNALS and not self.exiting:
                log(f"{signal.Signals(signum).name}: stopping")
                self.exiting = True
        self._reap()

    def _reap(self) -> None:
        """waitpid every exited child (also orphans reparented to us when we are PID 1)."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = self.children.get(pid)
            if child is not None:
                child.exit_code = os.waitstatus_to_exitcode(status)
                self._on_exit(child)

    def _on_exit(self, child: Child) -> None:
        if child.role == "command":
            # Whatever the command left in its process group (pool workers of a crashed
            # master, say) must not outlive it: a restart starts from nothing.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pid, signal.SIGKILL)
        for fd in list(child.fds):
            self._drain(child, fd, final=True)
        del self.children[child.pid]
        if child is self.watcher:
            self.watcher = None
            if not self.exiting:
                log(f"the file watcher exited (code {child.exit_code}): reloading is off")
            return
        if child is not self.current:
            return
        self.current = None
        if self.exiting:
            return
        if child.stopping:
            self.reload_stopped = time.monotonic()
            if self.reload_pending:
                self.reload_pending = False
                self.start_current()
            return
        self._on_unexpected_exit(child)

    def _on_unexpected_exit(self, child: Child) -> None:
        code = child.exit_code
        if child.role == "command":
            lines = list(self.output_tail)
            summary = summarize_output(lines, self.project)
            if summary is None and code != 0:
                last = next((line for line in reversed(lines) if line.strip()), "")
                summary = one_line(f"exited with code {code}" + (f": {last}" if last else ""))
            if summary is not None:
                self.error_file.set(summary)
                log(f"code error: {summary}; waiting for a change")
            else:
                log(f"the command exited with code {code}; waiting for a change")
            return
        reason = f"the server process exited unexpectedly (code {code})"
        if child.forced_error:
            log(f"{reason} while serving the error page; waiting for a change")
            return
        summary = self.error_file.current or reason
        log(f"{reason}; serving a 503 page until the next change")
        forced = CodeError(
            summary=summary, kind="ServerExited", details=f"{reason}: see the server's log.\n"
        )
        self.error_file.set(summary)
        self.start_server(forced)

    def _drain(self, child: Child, fd: int, final: bool = False) -> None:
        """Read what ``fd`` holds; close it at end of file (or when its process is gone)."""
        try:
            data = _read_available(fd)
        except OSError:
            data = None
        if data:
            self._on_data(child, fd, data)
        if data is None or final:
            rest = child.buffers.pop(fd, b"")
            if rest:
                self._on_line(child, fd, rest)
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(fd)
            with contextlib.suppress(OSError):
                os.close(fd)
            child.fds.pop(fd, None)

    def _on_data(self, child: Child, fd: int, data: bytes) -> None:
        stream = child.fds[fd]
        if stream in {"stdout", "stderr"}:
            _write_all(1 if stream == "stdout" else 2, data)
        buffer = child.buffers.get(fd, b"") + data
        *lines, rest = buffer.split(b"\n")
        child.buffers[fd] = rest
        for line in lines:
            self._on_line(child, fd, line)

    def _on_line(self, child: Child, fd: int, raw: bytes) -> None:
        stream = child.fds.get(fd, "")
        text = raw.decode("utf-8", "replace")
        if stream == "changes":
            self._on_changes(json.loads(text))
        elif stream == "report":
            self._on_report(child, json.loads(text))
        else:
            self.output_tail.append(text.rstrip("\r"))
            pattern = self.options.ready_pattern
            if child is self.current and pattern is not None and pattern.search(text):
                self._command_ready(child)

    def _command_ready(self, child: Child) -> None:
        if child.ready:
            return
        child.ready = True
        if self.error_file.current is not None:
            log("the command is up again")
        self.error_file.clear()

    def _on_report(self, child: Child, message: dict[str, Any]) -> None:
        event = message.get("event")
        if event == "error" and child is self.current:
            summary = str(message.get("summary", ""))
            self.error_file.set(summary)
            log(f"code error: {summary}; every request gets a 503 until the next change")
        elif event == "ready" and child is self.current:
            child.ready = True
            self.error_file.clear()
            self._log_ready(child)
        elif event == "modules":
            for name in message.get("names", []):
                if name not in sys.modules and name not in self.preload_seen:
                    self.preload_seen.add(name)
                    self.preload_queue.append(name)

    def _log_ready(self, child: Child) -> None:
        now = time.monotonic()
        if self.reload_started is None:
            log(f"ready in {now - child.started:.2f} s")
            return
        stop = (self.reload_stopped or child.started) - self.reload_started
        log(
            f"reloaded in {now - self.reload_started:.3f} s (old server stopped in "
            f"{stop:.3f} s, new one ready in {now - child.started:.3f} s)"
        )
        self.reload_started = None

    def _on_changes(self, batch: dict[str, Any]) -> None:
        paths = [str(p) for p in batch.get("paths", [])]
        newest = float(batch.get("newest_mtime", 0.0))
        shown = ", ".join(self.project.display(p) for p in paths[:3])
        if len(paths) > 3:
            shown += f" and {len(paths) - 3} more"
        seen = f" (seen {1000 * (time.time() - newest):.0f} ms after the save)" if newest else ""
        log(f"{shown} changed{seen}; reloading")
        if self.exiting:
            return
        self.reload_started = time.monotonic()
        self.reload_stopped = None
        current = self.current
        if current is None:
            self.start_current()
        else:
            self.reload_pending = True
            self.stop(current, kill_after=self.options.graceful_timeout + 2.0)

    def _preload_one(self) -> None:
        """Import the next queued module (failures are ignored: the server imports it)."""
        name = self.preload_queue.popleft()
        if name not in sys.modules:
            started = time.perf_counter()
            before = len(sys.modules)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    importlib.import_module(name)
                except KeyboardInterrupt:
                    raise
                except BaseException:  # anything a third-party import may raise
                    pass
            self.preload_count += len(sys.modules) - before
            self.preload_time += time.perf_counter() - started
        if not self.preload_queue and self.preload_count:
            log(
                f"preloaded {self.preload_count} modules in {self.preload_time:.2f} s "
                f"({len(sys.modules)} loaded in the supervisor)"
            )
            self.preload_count = 0
            self.preload_time = 0.0

    # -- main loop ---------------------------------------------------------------------------

    def _timeout(self) -> float | None:
        deadlines = [c.kill_at for c in self.children.values() if c.kill_at is not None]
        current = self.current
        if (
            current is not None
            and current.role == "command"
            and not current.ready
            and self.options.ready_pattern is None
        ):
            deadlines.append(current.started + self.options.ready_after)
        if not deadlines:
            return 0.0 if self.preload_queue else None
        return max(0.0, min(deadlines) - time.monotonic())

    def _command_ready_by_time(self) -> None:
        current = self.current
        if (
            current is not None
            and current.role == "command"
            and not current.ready
            and self.options.ready_pattern is None
            and time.monotonic() - current.started >= self.options.ready_after
        ):
            self._command_ready(current)

    def _dispatch(self, timeout: float | None) -> bool:
        events = self.selector.select(timeout)
        for key, _ in events:
            kind, data = key.data
            if kind == "wakeup":
                self._on_wakeup()
            else:
                child, fd = data
                if fd in child.fds:
                    self._drain(child, fd)
        self._kill_overdue()
        self._command_ready_by_time()
        return bool(events)

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; returns the exit code."""
        self.install_signals()
        if not self.options.command:
            self.bind()
        if self.options.preload:
            self.preload_now(self.options.preload)
        self.start_watcher()
        self.start_current()
        while not self.exiting:
            busy = self._dispatch(self._timeout())
            if not busy and self.preload_queue and not self.exiting:
                self._preload_one()
        return self.shutdown()

    def shutdown(self) -> int:
        """Stop every child (gracefully, then by force), remove the error file, exit 0."""
        for child in list(self.children.values()):
            self.stop(child, kill_after=self.options.graceful_timeout + 2.0)
        deadline = time.monotonic() + self.options.graceful_timeout + 5.0
        while self.children and time.monotonic() < deadline:
            timeout = self._timeout()
            self._dispatch(0.5 if timeout is None else min(timeout, 0.5))
        self.error_file.clear()
        if self.sock is not None:
            self.sock.close()
        if self.children:
            log(f"{len(self.children)} child process(es) did not exit")
            return 1
        log("stopped")
        return 0


def _noop_handler(signum: int, frame: FrameType | None) -> None:
    """Signals are handled from the wakeup pipe, in the main loop."""


class _ParentGone:
    """A watchfiles stop event: set when the supervisor is gone."""

    def __init__(self, parent: int) -> None:
        self.parent = parent

    def is_set(self) -> bool:
        return os.getppid() != self.parent


def _watch_forever(options: Options, out_fd: int, since: float) -> int:
    """In the watcher process: one JSON line per batch of changes under the watched dirs.

    Files saved after ``since`` (the supervisor's start) but before the watches were set up
    are found by one scan once watching, so no early save is missed.
    """
    import watchfiles

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor stops us with SIGTERM
    watch_filter = watchfiles.PythonFilter(extra_extensions=options.watch_ext)
    caught_up = False
    for changes in watchfiles.watch(
        *options.watch,
        watch_filter=watch_filter,
        step=max(1, int(options.reload_delay * 1000)),
        stop_event=_ParentGone(os.getppid()),
        rust_timeout=WATCHER_TICK_MS,
        yield_on_timeout=True,
        raise_interrupt=False,
    ):
        paths = {path for _, path in changes}
        if not caught_up:  # the watches are in place now
            caught_up = True
            # File times come from a coarse kernel clock: allow for its lag.
            paths |= _modified_since(options.watch, since - MTIME_SLACK, watch_filter)
        if not paths:
            continue
        newest = 0.0
        for path in paths:
            with contextlib.suppress(OSError):
                newest = max(newest, os.stat(path).st_mtime)
        line = json.dumps({"paths": sorted(paths), "newest_mtime": newest}) + "\n"
        try:
            _write_all(out_fd, line.encode())
        except BrokenPipeError:
            return 0
    return 0


def _modified_since(
    roots: Sequence[Path], since: float, accept: Callable[[Any, str], bool]
) -> set[str]:
    """Watched files whose mtime is ``since`` or later."""
    import watchfiles

    found: set[str] = set()
    ignored = set(getattr(accept, "ignore_dirs", ()))  # __pycache__, .git, node_modules...
    for root in roots:
        for directory, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if d not in ignored]
            for name in files:
                path = os.path.join(directory, name)
                with contextlib.suppress(OSError):
                    if os.stat(path).st_mtime >= since and accept(watchfiles.Change.modified, path):
                        found.add(path)
    return found


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``python devserver.py APP ...`` or ``python devserver.py --command ...``."""
    # Run as a script, our own directory is sys.path[0]: keep it from shadowing anything.
    if sys.path and os.path.realpath(sys.path[0] or ".") == os.path.dirname(THIS_FILE):
        del sys.path[0]
    sys.dont_write_bytecode = True
    options = parse_args(sys.argv[1:] if argv is None else argv)
    return Supervisor(options).run()


if __name__ == "__main__":
    sys.exit(main())
