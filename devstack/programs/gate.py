"""gate: start a Python program's interpreter and heavy imports early, run it once released.

Self-contained (stdlib only, Python 3.11+): devstack bind-mounts it read-only into a held
service's container (spec.Held) and makes it the container's command::

    python /opt/devstack/gate.py --preload fastapi,uvicorn -- python -m pkg.mod ARGS...
    python /opt/devstack/gate.py --preload celery -- python /path/script.py ARGS...

1. The release signal (SIGUSR2 by default; neither uvicorn nor Celery uses it) and the stop
   signals are blocked first thing, so a signal sent from now on is kept pending, not lost.
2. The ``--preload`` modules are imported in order (one that cannot be imported is skipped,
   with one log line: the program reports it properly), until the release arrives: a release
   never waits for a preload (list what every run needs first).
3. It waits for the release signal. SIGTERM/SIGINT while held exit at once (a held PID 1
   would otherwise ignore ``docker stop``). When ``--marker`` exists (this container was
   released once: ``docker restart`` or an engine restart must not hold it again), steps 2
   and 3 are skipped.
4. It writes the marker, ignores later release signals (devstack re-sends the release until
   the service is ready: the gate is idempotent), restores the stop signals and runs the
   program: ``python -m MOD ...`` and ``python SCRIPT ...`` IN this process with runpy (the
   preloaded modules are reused; at its end the process exits without tearing down every
   module), anything else with exec.

A signal sent before step 1 (while the interpreter starts) is dropped by the kernel for a
PID 1 without a handler; the sender re-sends it, which is why devstack does.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import importlib
import os
import signal
import sys
import time
from collections.abc import Sequence

try:  # imported as devstack.programs.gate (tests, type checker)
    from .ds_runner import PROGRAMS_DIR, STOP_SIGNALS, python_program, run_python_program
    from .ds_runner import log as runner_log
except ImportError:  # run as a script: this folder is sys.path[0]
    from ds_runner import (  # type: ignore[no-redef,import-not-found]
        PROGRAMS_DIR,
        STOP_SIGNALS,
        python_program,
        run_python_program,
    )
    from ds_runner import log as runner_log  # type: ignore[no-redef]

EXIT_ON = {signal.SIGTERM: 143, signal.SIGINT: 130}


def log(message: str) -> None:
    """One line on stderr, prefixed so it reads well in the container's log."""
    runner_log(message, "devstack-gate")


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """The gate's options and the program's command line (after ``--``)."""
    args = list(argv)
    if "--" not in args:
        raise SystemExit("gate.py: usage: gate.py [--preload MOD,...] [--marker PATH] -- PROGRAM")
    split = args.index("--")
    parser = argparse.ArgumentParser(prog="gate.py", description=__doc__.splitlines()[0])
    parser.add_argument("--preload", default="", help="modules to import while held (MOD,...)")
    parser.add_argument("--marker", default="/tmp/devstack-released", help="'released' file")
    parser.add_argument("--signal", default="SIGUSR2", help="the release signal")
    options = parser.parse_args(args[:split])
    program = args[split + 1 :]
    if not program:
        parser.error("no program after --")
    return options, program


def preload(names: Sequence[str], waiting: set[signal.Signals] | None = None) -> None:
    """Import `names` in order; one that fails is skipped with one log line. Once one of the
    `waiting` signals is pending (released already), stop: the program imports the rest
    itself if it needs them, which is never later than importing them here first."""
    started, before = time.perf_counter(), len(sys.modules)
    for index, name in enumerate(names):
        if waiting and waiting & signal.sigpending():
            log(f"released while preloading: {len(names) - index} modules left to the program")
            break
        try:
            importlib.import_module(name)
        except ImportError as exc:
            log(f"cannot preload {name} ({type(exc).__name__}: {exc}); the program imports it")
    if names:
        count, seconds = len(sys.modules) - before, time.perf_counter() - started
        log(f"preloaded {count} modules in {seconds:.2f} s")


def hold(release: signal.Signals, marker: str) -> None:
    """Wait for `release`, then write `marker`; exit on a stop signal."""
    log(f"held until {release.name}")
    held_at = time.perf_counter()
    got = signal.sigwait({release, *STOP_SIGNALS})
    if got != release:
        log(f"{signal.Signals(got).name} while held: exiting")
        raise SystemExit(EXIT_ON.get(signal.Signals(got), 1))
    log(f"released after {time.perf_counter() - held_at:.2f} s held")
    if marker:
        try:
            with open(marker, "w", encoding="utf-8") as handle:
                handle.write(f"{time.time()}\n")
        except OSError as exc:
            log(f"cannot write {marker} ({exc}): a restart of this container holds again")


def run(program: Sequence[str]) -> int:
    """Run `program` in this process (a Python program of this interpreter) or exec it; the
    exit code the interpreter would give (an uncaught exception's traceback is printed: 1)."""
    how = python_program(program)
    if how is None:
        os.execvp(program[0], list(program))
    return run_python_program(*how)


def fast_exit(code: int) -> None:
    """Exit as the interpreter would (atexit handlers, flushed output) but without tearing
    down every module one by one: with the preloads that alone costs a few tenths of a
    second, after the program's work is done (the migrations job's exit is on `up`'s path)."""
    with contextlib.suppress(BaseException):
        atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BaseException):
            stream.flush()
    os._exit(code)


def main(argv: Sequence[str] | None = None) -> None:
    """Block the signals, preload, hold, run."""
    options, program = parse_args(sys.argv[1:] if argv is None else argv)
    release = signal.Signals[options.signal]
    blocked = {release, *STOP_SIGNALS}
    signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    # sys.path[0] as `python -m` (the working directory) or `python SCRIPT` (its directory)
    # has it, instead of ours: the preloads and the program import what they would
    how = python_program(program)
    first = os.path.dirname(os.path.realpath(how[1])) if how and how[0] == "path" else os.getcwd()
    if sys.path and os.path.realpath(sys.path[0] or ".") == PROGRAMS_DIR:
        sys.path[0] = first
    if options.marker and os.path.exists(options.marker):
        # released before (`docker restart`): run at once, importing only what it needs
        log(f"released before ({options.marker} exists): not holding")
    else:
        preload([name.strip() for name in options.preload.split(",") if name.strip()], blocked)
        hold(release, options.marker)
    signal.signal(release, signal.SIG_IGN)  # later releases (re-sent until ready) do nothing
    with contextlib.suppress(OSError):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, blocked)
    fast_exit(run(program))


if __name__ == "__main__":
    main()
