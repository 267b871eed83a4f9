"""Everything the user sees: live or plain progress, the status table, plans and errors (rich)."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from rich.console import Console
from rich.emoji import Emoji
from rich.table import Table
from rich.text import Text

from devstack.cli.plaintable import HEADER, status_parts
from devstack.converge.progress import FAILED, HEALTHY, KEPT, REMOVED, SKIPPED, Event, Reporter
from devstack.converge.status import StatusRow
from devstack.engine.endpoint import Endpoint
from devstack.errors import DevstackError

PHASE_STYLE = {
    HEALTHY: "green",
    REMOVED: "green",
    KEPT: "cyan",
    FAILED: "bold red",
    SKIPPED: "magenta",
}
STATE_STYLE = {"running": "green", "exited": "red", "missing": "dim", "created": "yellow"}
HEALTH_STYLE = {
    "healthy": "green",
    "ready (probed)": "green",
    "ready": "green",
    "not ready": "bold red",
    "unhealthy": "bold red",
    "code error": "bold red",
    "starting": "yellow",
}


def plain_wanted(quiet: bool = False) -> bool:
    """Plain timestamped lines instead of a live display: not a terminal, NO_COLOR, --quiet."""
    return quiet or bool(os.environ.get("NO_COLOR")) or not sys.stdout.isatty()


def make_console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else 160  # logs and pipes: don't squeeze tables to 80
    return Console(
        stderr=stderr, width=width, no_color=bool(os.environ.get("NO_COLOR")), highlight=False
    )


SUBJECT_WIDTH = 12  # the plain lines' subject column; `up` widens it to its longest service


def plain_as_is(line: str, width: int) -> bool:
    """Whether rich prints `line` (markup off) unchanged off a terminal: it fits the width,
    has no emoji code, no wide character and no trailing space."""
    return (
        len(line) <= width
        and line.isascii()
        and line == line.rstrip()
        and (":" not in line or Emoji.replace(line) == line)
    )


def plain_reporter(console: Console, width: int = SUBJECT_WIDTH) -> Reporter:
    """Timestamped lines; a repeat of a subject's last phase and detail is not printed again.
    `width`: the subject column (at least SUBJECT_WIDTH)."""
    width = max(width, SUBJECT_WIDTH)
    lock = threading.Lock()
    last: dict[str, Event] = {}
    # off a terminal a short plain line is written as rich would print it, without its
    # rendering (a few lines per service: ~0.3 ms each)
    direct = None if console.is_terminal else console.file
    columns = console.width  # rich asks the terminal each time: once per line adds up

    def report(event: Event) -> None:
        stamp = datetime.now().strftime("%H:%M:%S.%f")[:-3]
        detail = f"  {event.detail}" if event.detail else ""
        with lock:
            if last.get(event.subject) == event:
                return
            last[event.subject] = event
            line = f"{stamp} {event.subject:<{width}} {event.phase}{detail}"
            if direct is not None and plain_as_is(line, columns):
                direct.write(f"{line}\n")
                direct.flush()
            else:
                console.print(line, markup=False)

    return report


@contextmanager
def live_reporter(console: Console, subjects: list[str]) -> Iterator[Reporter]:
    """One live line per subject: phase, detail and elapsed seconds."""
    from rich.live import Live

    start = time.monotonic()
    lines: dict[str, tuple[str, str, float]] = {s: ("pending", "", start) for s in subjects}
    lock = threading.Lock()

    def render() -> Table:
        table = Table.grid(padding=(0, 2))
        now = time.monotonic()
        with lock:
            items = list(lines.items())
        for subject, (phase, detail, since) in items:
            done = phase in {HEALTHY, REMOVED, KEPT, FAILED, SKIPPED}
            elapsed = "" if done else f"{now - since:4.1f}s"
            table.add_row(
                Text(subject, style="bold"),
                Text(phase, style=PHASE_STYLE.get(phase, "yellow")),
                Text(elapsed, style="dim"),
                Text(detail[:100], style="dim" if not done else ""),
            )
        return table

    class Renderable:
        def __rich__(self) -> Table:
            return render()

    def report(event: Event) -> None:
        with lock:
            previous = lines.get(event.subject)
            since = previous[2] if previous and previous[0] == event.phase else time.monotonic()
            lines[event.subject] = (event.phase, event.detail, since)

    with Live(Renderable(), console=console, refresh_per_second=10, transient=False):
        yield report


def status_table(
    project: str,
    rows: list[StatusRow],
    engine: Endpoint | None = None,
    start_interval: bool | None = None,
) -> Table:
    """The status table; its title names the engine when it is not the default one (the
    text of its parts: devstack.cli.plaintable, which prints it without rich off a terminal)."""
    title, caption, _ = status_parts(project, rows, engine, start_interval)
    table = Table(
        title=title,
        min_width=max(len(line) for line in title.splitlines()),  # never wrap the title
        title_justify="left",
        caption=caption or None,
        caption_justify="left",
        caption_style="yellow",
    )
    for column in HEADER:
        table.add_column(column, overflow="fold", min_width=6)
    for row in rows:
        state = Text(row.state, style=STATE_STYLE.get(row.state, "yellow"))
        if row.drift:
            state.append(" *", style="yellow")
        table.add_row(
            row.service,
            row.container or "-",
            state,
            Text(row.health or "-", style=HEALTH_STYLE.get(row.health.split(";")[0], "dim")),
            "\n".join(row.ports) or "-",
            row.image,
            row.uptime or "-",
        )
    return table


def print_error(console: Console, error: DevstackError) -> None:
    """`error: MESSAGE` on one line however long (never wrapped: logs and grep see one line),
    then the details and the hint."""
    console.print(Text("error: ", style="bold red") + Text(error.message), soft_wrap=True)
    if error.details:
        console.print(Text(error.details, style="dim"))
    if error.hint:
        console.print(Text("hint: ", style="bold") + Text(error.hint))
