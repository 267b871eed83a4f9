"""`logs`: the services' output, interleaved with a coloured service prefix; `-f` follows."""

from __future__ import annotations

from rich.console import Console

from devstack.engine import Engine
from devstack.observed import Observed
from devstack.spec import Stack


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
    raise NotImplementedError
