"""`exec`: run a command in a container through docker-py and return its exit code."""

from __future__ import annotations

from devstack.engine import Engine


def run_in_container(engine: Engine, container: str, argv: list[str], interactive: bool) -> int:
    """Run `argv`; with `interactive`, attach the terminal (TTY, raw mode, resize)."""
    raise NotImplementedError
