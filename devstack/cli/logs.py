"""`logs`: the services' output, interleaved with a coloured service prefix; `-f` follows.

Without `-f`, every container's timestamped output is read once and merged by timestamp.
With `-f`, devstack.usecases.logs.Follower follows every service, across restarts."""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime

from rich.console import Console
from rich.text import Text

from devstack.cli.ui import make_console
from devstack.converge.engine_protocol import Engine
from devstack.converge.observed import Observed
from devstack.declare.spec import Stack
from devstack.errors import ConfigError
from devstack.usecases.logs import COLOURS, Follower, split_stamp

__all__ = ["Printer", "parse_since", "show_logs", "split_stamp"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?[smhd])+")


def parse_since(value: str, now: float | None = None) -> float:
    """`10s`, `5m`, `2h`, `1d` (or `1h30m`) ago, or an ISO datetime -> epoch seconds."""
    text = value.strip()
    current = time.time() if now is None else now
    if _DURATION.fullmatch(text):
        ago = sum(float(n) * _UNITS[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)([smhd])", text))
        return max(current - ago, 1e-6)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.timestamp() <= 0:
        raise ConfigError(
            f"--since {value!r} is neither a duration nor an ISO datetime",
            hint="e.g. --since 30s, --since 10m, --since 2h, --since 1d or "
            "--since 2026-11-26T08:00:00 (local time unless it ends in Z or +HH:MM)",
        )
    return moment.timestamp()


class Printer:
    """Prefixed, thread-safe lines: log lines to stdout, notes about containers to stderr.

    Prefixes are rendered once (colour codes only on a terminal without NO_COLOR); log text is
    written as is, which keeps a large `logs` fast."""

    def __init__(self, console: Console, notes: Console, names: list[str], stack: Stack):
        width = max((len(n) for n in names), default=0)
        order = [s.name for s in stack.services]
        self.prefix = {
            n: Text(f"{n:<{width}}  | ", style=COLOURS[order.index(n) % len(COLOURS)])
            for n in names
        }
        self.rendered = {n: _render(console, prefix) for n, prefix in self.prefix.items()}
        self.console, self.notes = console, notes
        self.note_style = "" if notes.no_color else "dim"
        self.lock = threading.Lock()
        self.on_broken_pipe: Callable[[], None] = lambda: None
        self.broken = False
        self.flush = True  # after every line (following); else once, at the end

    def line(self, service: str, text: str) -> None:
        with self.lock:
            if not self.broken:
                self._guard(self._write, self.rendered[service] + text.rstrip("\r") + "\n")

    def note(self, service: str, text: str) -> None:
        line = Text.assemble(self.prefix[service], Text(text, style=self.note_style))
        with self.lock:
            if not self.broken:
                self._guard(self.notes.print, line, soft_wrap=True)

    def done(self) -> None:
        with self.lock:
            if not self.broken:
                self._guard(self.console.file.flush)

    def _write(self, line: str) -> None:
        self.console.file.write(line)
        if self.flush:
            self.console.file.flush()

    def _guard(self, action: Callable[..., object], *args: object, **kwargs: object) -> None:
        try:
            action(*args, **kwargs)
        except BrokenPipeError:  # `logs | head`: the reader is gone; so is our output
            self.broken = True
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            self.on_broken_pipe()


def _render(console: Console, text: Text) -> str:
    """`text` as `console` would write it (with colour codes only where it uses colour)."""
    with console.capture() as captured:
        console.print(text, end="", soft_wrap=True)
    return captured.get()


def show_logs(
    engine: Engine,
    stack: Stack,
    observed: Observed,
    console: Console,
    services: list[str],
    follow: bool,
    tail: int | None,
    since: str | None,
) -> int:
    """Print logs; return the exit code."""
    if tail is not None and tail < 0:
        raise ConfigError(f"--tail must be 0 or more (got {tail})")
    since_at = parse_since(since) if since else None
    names = [s.name for s in stack.services if not services or s.name in services]
    notes = make_console(stderr=True)
    if not names:  # every service is in a group turned off
        notes.print("no service is on: nothing has logs (`up --with GROUP` turns a group on)")
        return 1
    printer = Printer(console, notes, names, stack)
    present = [n for n in names if n in observed.containers]
    for name in names:
        if name not in present:
            printer.note(name, f"no container; `python -m devstack up {name}`")
    if not present:
        return 1
    if not follow:
        _print_merged(engine, observed, printer, present, tail, since_at)
        return 0
    return Follower(engine, stack, printer, names, present, tail, since_at).run()


def _print_merged(
    engine: Engine,
    observed: Observed,
    printer: Printer,
    names: list[str],
    tail: int | None,
    since: float | None,
) -> None:
    """Read every container's output once, then print it merged by timestamp."""
    entries: list[tuple[int, int, int, str, str]] = []
    for rank, name in enumerate(names):
        raw = engine.read_logs(observed.containers[name].id, tail, since)
        stamp = 0
        for seq, line in enumerate(raw.decode(errors="replace").splitlines()):
            parsed, text = split_stamp(line)
            stamp = stamp if parsed is None else parsed  # unstamped: keep after its predecessor
            entries.append((stamp, rank, seq, name, text))
    entries.sort(key=lambda e: e[:3])
    printer.flush = False
    for _, _, _, name, text in entries:
        printer.line(name, text)
    printer.done()
