"""devserver's command line."""

from __future__ import annotations

import argparse
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass


try:  # imported as devstack.programs.* (tests, type checker)
    from .ds_runner import DEFAULT_ERROR_FILE
except ImportError:  # run as a script: this folder is sys.path[0]
    from ds_runner import DEFAULT_ERROR_FILE  # type: ignore[no-redef,import-not-found]


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
    overlap: bool


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
    parser.add_argument(
        "--overlap",
        action="store_true",
        help="--command: on a change, start the new command at once and let the old one "
        "finish beside it (for queue consumers, where two can run at once)",
    )
    ns = parser.parse_args(argv)
    if bool(ns.app) == bool(ns.command):
        parser.error("give either APP (MODULE:ATTRIBUTE) or --command, not both")
    if ns.app and ":" not in ns.app:
        parser.error(f"APP must be MODULE:ATTRIBUTE, got {ns.app!r}")
    command: tuple[str, ...] = tuple(shlex.split(ns.command)) if ns.command else ()
    if ns.command and not command:
        parser.error("--command is empty")
    if ns.overlap and not ns.command:
        parser.error("--overlap is for --command: two servers cannot share the socket's port")
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
        overlap=ns.overlap,
    )


def _split(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]
