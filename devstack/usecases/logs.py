"""Following the services' output (`logs -f`, the dashboard): one thread per service follows
its container and, when a stream ends (the container stopped, restarted or was recreated),
waits until a container of that name runs again and resumes from the last line it passed on:
nothing is repeated or lost. Lines go to a `LogSink` (the CLI prints, the dashboard sends)."""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Protocol

from devstack.converge.engine_protocol import Engine, Stream
from devstack.declare.spec import Stack
from devstack.errors import DevstackError, DockerApiError, DockerUnavailable

# Each service's colour, by its place in the stack (`logs` and the dashboard agree).
COLOURS = ("cyan", "yellow", "green", "magenta", "blue", "bright_red")
POLL = 0.2  # seconds between checks for a stopped container to run again
# Lines passed on within this much log time of the newest are remembered, and a resumed stream
# starts this far back: stdout and stderr lines may reach the log slightly out of order.
OVERLAP_NS = 2_000_000_000
_STAMP = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)")


def colour_of(stack: Stack, service: str) -> str:
    """The service's colour in `logs` (by its place among the stack's services)."""
    order = [s.name for s in stack.services]
    return COLOURS[order.index(service) % len(COLOURS)] if service in order else COLOURS[0]


class LogSink(Protocol):
    """Where followed lines go."""

    on_broken_pipe: Callable[[], None]  # the follower sets it: calling it stops following

    def line(self, service: str, text: str) -> None:
        """One line of the service's output."""

    def note(self, service: str, text: str) -> None:
        """A note about the service's container (stopped, running again)."""


def split_stamp(line: str) -> tuple[int | None, str]:
    """'2026-11-26T08:00:00.123456789Z text' -> (nanoseconds since the epoch, 'text')."""
    stamp, _, rest = line.partition(" ")
    match = _STAMP.fullmatch(stamp)
    if not match:
        return None, line
    base, fraction, zone = match.groups()
    moment = datetime.fromisoformat(base + ("+00:00" if zone == "Z" else zone))
    return int(moment.timestamp()) * 1_000_000_000 + int((fraction or "0").ljust(9, "0")), rest


class Follower:
    """One thread per service; Ctrl-C (or a closed stdout, or `stop` set) ends them all with
    exit code 0. `poll`: seconds between checks for a stopped container to run again."""

    def __init__(
        self,
        engine: Engine,
        stack: Stack,
        printer: LogSink,
        names: list[str],
        present: list[str],
        tail: int | None,
        since: float | None,
        poll: float = POLL,
    ):
        self.poll = poll
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
                    self.stop.wait(self.poll)
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
                    for text, stamp in lines(stream):
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
                    self.stop.wait(self.poll)  # a stream ended under a running container: re-open
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
                self.stop.wait(self.poll * 5)

    def _open(self, name: str, tail: int | None, since: float | None) -> Stream | None:
        """Open a stream and register it so that Ctrl-C can close it; None once stopping."""
        stream = self.engine.follow_logs(name, tail, since)
        with self.lock:
            if self.stop.is_set():
                stream.close()
                return None
            self.streams.add(stream)
        return stream


def lines(stream: Stream) -> Iterator[tuple[str, int | None]]:
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
