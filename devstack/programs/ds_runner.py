"""The programs' shared constants and runner: a command that is a Python program of this
interpreter (``python -m MOD``, ``python SCRIPT``, a console script) runs in this process with
runpy (what was imported before is reused), anything else is exec'd. Used by the gate and by
devserver; standard library only."""

from __future__ import annotations

import errno
import os
import runpy
import select
import shutil
import signal
import sys
import traceback
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass


PROGRAMS_DIR = os.path.dirname(os.path.realpath(__file__))  # this folder
DEFAULT_ERROR_FILE = "/tmp/devstack-code-error"


ERROR_HEADER = "X-Devstack-Code-Error"


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


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


def log(message: str, program: str = "devserver") -> None:
    """One line on stderr, in uvicorn's layout so it reads well in the container's log."""
    sys.stderr.write(f"INFO:     {program}: {message}\n")
    sys.stderr.flush()
