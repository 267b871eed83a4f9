"""devserver's watcher: a forked process that reports changed source files to the
supervisor (watchfiles, plus a catch-up scan by modification time after its first tick)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass


try:  # imported as devstack.programs.* (tests, type checker)
    from .ds_options import Options
    from .ds_runner import _write_all
except ImportError:  # run as a script: this folder is sys.path[0]
    from ds_options import Options  # type: ignore[no-redef,import-not-found]
    from ds_runner import _write_all  # type: ignore[no-redef,import-not-found]


MTIME_SLACK = 0.02  # seconds a file's mtime may lag behind time.time()


WATCHER_TICK_MS = 250  # the watcher's first idle tick triggers its catch-up scan


class _ParentGone:
    """A watchfiles stop event: set when the supervisor is gone."""

    def __init__(self, parent: int) -> None:
        self.parent = parent

    def is_set(self) -> bool:
        return os.getppid() != self.parent


def _watch_forever(options: Options, out_fd: int, since: float) -> int:
    """In the watcher process: one JSON line per batch of changes under the watched dirs.

    Files saved after ``since`` (the supervisor's start) but before the watches were set up
    are found by one scan once watching, so no early save is missed.
    """
    import watchfiles

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor stops us with SIGTERM
    watch_filter = watchfiles.PythonFilter(extra_extensions=options.watch_ext)
    caught_up = False
    for changes in watchfiles.watch(
        *options.watch,
        watch_filter=watch_filter,
        step=max(1, int(options.reload_delay * 1000)),
        stop_event=_ParentGone(os.getppid()),
        rust_timeout=WATCHER_TICK_MS,
        yield_on_timeout=True,
        raise_interrupt=False,
    ):
        paths = {path for _, path in changes}
        if not caught_up:  # the watches are in place now
            caught_up = True
            # File times come from a coarse kernel clock: allow for its lag.
            paths |= _modified_since(options.watch, since - MTIME_SLACK, watch_filter)
        if not paths:
            continue
        newest = 0.0
        for path in paths:
            with contextlib.suppress(OSError):
                newest = max(newest, os.stat(path).st_mtime)
        line = json.dumps({"paths": sorted(paths), "newest_mtime": newest}) + "\n"
        try:
            _write_all(out_fd, line.encode())
        except BrokenPipeError:
            return 0
    return 0


def _modified_since(
    roots: Sequence[Path], since: float, accept: Callable[[Any, str], bool]
) -> set[str]:
    """Watched files whose mtime is ``since`` or later."""
    import watchfiles

    found: set[str] = set()
    ignored = set(getattr(accept, "ignore_dirs", ()))  # __pycache__, .git, node_modules...
    for root in roots:
        for directory, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if d not in ignored]
            for name in files:
                path = os.path.join(directory, name)
                with contextlib.suppress(OSError):
                    if os.stat(path).st_mtime >= since and accept(watchfiles.Change.modified, path):
                        found.add(path)
    return found
