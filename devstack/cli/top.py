"""`top`: what the services are doing now, from the stack's Prometheus, refreshed every
second (a live table on a terminal, plain lines otherwise). Prometheus down is said and
retried, never a traceback; Ctrl-C ends it (exit 130)."""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

from devstack.errors import MetricsUnavailable

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from devstack.usecases.metrics import Monitor, Rates

LATENCIES = {"p50", "p95"}


def cell(name: str, value: float | None) -> str:
    """One number as `top` shows it: latencies in ms, rates with two decimals, - for none."""
    if value is None:
        return "-"
    if name in LATENCIES:
        return f"{value * 1000:.1f}ms"
    if name == "queued":
        return f"{value:.0f}"
    return f"{value:.2f}"


def line(rates: Rates, width: int) -> str:
    """A service's numbers on one plain line."""
    numbers = "  ".join(f"{name} {cell(name, v)}" for name, v in rates.values.items())
    return f"{rates.service:<{width}}  {numbers}"


def table(frame: list[Rates] | MetricsUnavailable, url: str, every: float) -> Table:
    """The live view: one row per service, its family's columns."""
    from rich.table import Table

    if isinstance(frame, MetricsUnavailable):
        grid = Table.grid()
        grid.add_row(f"[red]{frame.message}[/]: retrying every {every:g}s (Ctrl-C ends)")
        return grid
    columns = list(dict.fromkeys(name for rates in frame for name in rates.values))
    view = Table(title=f"{url} · every {every:g}s · Ctrl-C ends", title_justify="left")
    view.add_column("service")
    for column in columns:
        view.add_column(column, justify="right")
    for rates in frame:
        view.add_row(rates.service, *(cell(c, rates.values.get(c)) for c in columns))
    return view


def read(monitor: Monitor) -> list[Rates] | MetricsUnavailable:
    try:
        return monitor.rates()
    except MetricsUnavailable as exc:
        return exc


def run(console: Console, monitor: Monitor, args: argparse.Namespace, plain: bool) -> int:
    """Show the numbers until interrupted (`--once`: one frame; exit 1 if Prometheus is down)."""
    every: float = args.interval
    if args.once or plain:
        width = max((len(s.name) for s in monitor.services), default=8)
        while True:
            frame = read(monitor)
            stamp = time.strftime("%H:%M:%S")
            if isinstance(frame, MetricsUnavailable):
                console.print(f"{stamp} {frame.message}: retrying", markup=False)
                if args.once:
                    return 1
            else:
                for rates in frame:
                    console.print(f"{stamp} {line(rates, width)}", markup=False)
                if args.once:
                    return 0
            time.sleep(every)
    from rich.live import Live

    with Live(
        table(read(monitor), monitor.url, every), console=console, auto_refresh=False
    ) as live:
        while True:
            time.sleep(every)
            live.update(table(read(monitor), monitor.url, every), refresh=True)
