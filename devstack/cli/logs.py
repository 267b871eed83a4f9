"""`logs`: the services' output, interleaved with a coloured service prefix; `-f` follows.

Without `-f`, every container's timestamped output is read once and merged by timestamp.
With `-f`, one thread per service follows its container and, when a stream ends (the container
stopped, restarted or was recreated), waits until a container of that name runs again and
resumes from the last line it printed: nothing is repeated or lost."""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from datetime import datetime

from rich.console import Console
from rich.text import Text

from devstack.cli.ui import make_console
from devstack.converge.engine_protocol import Engine, Stream
from devstack.converge.observed import Observed
from devstack.declare.spec import Stack
from devstack.errors import ConfigError, DevstackError, DockerApiError, DockerUnavailable

COLOURS = ("cyan", "yellow", "green", "magenta", "blue", "bright_red")
POLL = 0.2  # seconds between checks for a stopped container to run again
# Lines printed within this much log time of the newest are remembered, and a resumed stream
# starts this far back: stdout and stderr lines may reach the log slightly out of order.
OVERLAP_NS = 2_000_000_000
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?[smhd])+")
_STAMP = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)")


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


def split_stamp(line: str) -> tuple[int | None, str]:
    """'2026-11-26T08:00:00.123456789Z text' -> (nanoseconds since the epoch, 'text')."""
    stamp, _, rest = line.partition(" ")
    match = _STAMP.fullmatch(stamp)
    if not match:
        return None, line
    base, fraction, zone = match.groups()
    moment = datetime.fromisoformat(base + ("+00:00" if zone == "Z" else zone))
    return int(moment.timestamp()) * 1_000_000_000 + int((fraction or "0").ljust(9, "0")), rest


class Printer:
    """Prefixed, thread-safe lines: log lines to stdout, notes about containers to stderr.

    Prefixes are rendered once (colour codes only on a terminal without NO_COLOR); log text is
    written as is, which keeps a large `logs` fast."""

    def __init__(self, console: Console, notes: Console, names: list[str], stack: Stack):
        width = max(len(n) for n in names)
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


class Follower:
    """One thread per service; Ctrl-C (or a closed stdout) ends them all with exit code 0."""

    def __init__(
        self,
        engine: Engine,
        stack: Stack,
        printer: Printer,
        names: list[str],
        present: list[str],
        tail: int | None,
        since: float | None,
    ):
        self.engine, self.stack, self.printer = engine, stack, printer
        self.names, self.present, self.tail, self.since = names, set(present), tail, since
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.streams: set[Stream] = set()
        self.alive = len(names)
        self.failed = False
        self.fatal: DockerUnavailable | None = None  # the engine is gone: retrying cannot help
        printer.on_broken_pipe = self.stop.set

    def run(self) -> int:
        threads = [
            threading.Thread(target=self._guarded, args=(n,), name=f"logs-{n}", daemon=True)
            for n in self.names
        ]
        for thread in threads:
            thread.start()
        try:
            self.stop.wait()
        except KeyboardInterrupt:
            pass
        finally:
            self.stop.set()
            with self.lock:
                streams = list(self.streams)
            for stream in streams:
                stream.close()
            for thread in threads:
                thread.join(timeout=1)
        if self.fatal:
            raise self.fatal
        return 1 if self.failed else 0

    def _guarded(self, service: str) -> None:
        try:
            self._follow(service)
        except Exception as exc:  # a bug must not leave the others waiting forever
            self.failed = True
            self.printer.note(service, f"stopped following: {exc!r}")
        finally:
            with self.lock:
                self.alive -= 1
                if self.alive == 0:
                    self.stop.set()

    def _follow(self, service: str) -> None:
        name = self.stack.container_name(service)
        existed = service in self.present
        recent: deque[tuple[int, str]] = deque()  # (stamp, text) printed lately, oldest first
        seen: set[tuple[int, str]] = set()
        oldest: int | None = None  # older lines were left out by --tail/--since
        newest: int | None = None
        first_opened: int | None = None
        waiting = absent = not existed  # absent: we said that it is not running
        trouble = False
        while not self.stop.is_set():
            try:
                if waiting and not self.engine.is_running(name):
                    self.stop.wait(POLL)
                    continue
                if absent:
                    self.printer.note(service, "running; following")
                waiting = absent = trouble = False
                if first_opened is None:
                    tail, since = (self.tail, self.since) if existed else (None, None)
                    first_opened = time.time_ns()
                else:
                    # Resume from the newest line printed, less an overlap that `seen`
                    # de-duplicates, but never before the first line --tail/--since let in.
                    floor = first_opened if oldest is None else oldest
                    resume = floor if newest is None else max(newest - OVERLAP_NS, floor)
                    tail, since = None, max(resume - 1000, 1000) / 1e9
                stream = self._open(name, tail, since)
                if stream is None:
                    return
                try:
                    for text, stamp in _lines(stream):
                        if stamp is not None:
                            if (stamp, text) in seen:
                                continue  # printed before the stream was resumed
                            oldest = stamp if oldest is None else oldest
                            newest = stamp if newest is None else max(newest, stamp)
                            recent.append((stamp, text))
                            seen.add((stamp, text))
                            while recent and recent[0][0] < newest - OVERLAP_NS:
                                seen.discard(recent.popleft())
                        self.printer.line(service, text)
                finally:
                    with self.lock:
                        self.streams.discard(stream)
                if self.stop.is_set():
                    return
                waiting = True
                if self.engine.is_running(name):
                    self.stop.wait(POLL)  # a stream ended under a running container: re-open
                else:
                    self.printer.note(service, "container stopped; waiting for it to run again")
                    absent = True
            except DockerUnavailable as exc:
                if not self.stop.is_set():
                    self.fatal = exc
                    self.stop.set()
                return
            except DevstackError as exc:
                if self.stop.is_set():
                    return
                waiting = True
                if isinstance(exc, DockerApiError) and exc.status == DockerApiError.NOT_FOUND:
                    continue  # removed just now (a recreate): wait for the new one
                if not trouble:
                    self.printer.note(service, f"{exc.message}; retrying")
                    trouble = True
                self.stop.wait(POLL * 5)

    def _open(self, name: str, tail: int | None, since: float | None) -> Stream | None:
        """Open a stream and register it so that Ctrl-C can close it; None once stopping."""
        stream = self.engine.follow_logs(name, tail, since)
        with self.lock:
            if self.stop.is_set():
                stream.close()
                return None
            self.streams.add(stream)
        return stream


def _lines(stream: Stream) -> Iterator[tuple[str, int | None]]:
    """Complete lines of a chunked stream as (text, timestamp in ns or None)."""
    buffer = b""
    for chunk in stream:
        *lines, buffer = (buffer + chunk).split(b"\n")
        for line in lines:
            stamp, text = split_stamp(line.decode(errors="replace"))
            yield text, stamp
    if buffer:
        stamp, text = split_stamp(buffer.decode(errors="replace"))
        yield text, stamp
