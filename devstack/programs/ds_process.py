"""devserver's child processes: what the supervisor knows of each, and how it forks them
(signals blocked around the fork, the parent's death signalled, the supervisor's fds closed)."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import signal
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

try:  # imported as devstack.programs.* (tests, type checker)
    from .ds_runner import STOP_SIGNALS
except ImportError:  # run as a script: this folder is sys.path[0]
    from ds_runner import STOP_SIGNALS  # type: ignore[no-redef,import-not-found]


PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    """Linux: get SIGTERM when the supervisor dies, so no server outlives it."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


def _reset_signals_in_child() -> None:
    """A forked child starts with default dispositions and no wakeup fd of the supervisor."""
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)


@contextlib.contextmanager
def _signals_blocked() -> Iterator[None]:
    """Block stop signals and SIGCHLD around fork so none reaches a half-set-up child."""
    blocked = {*STOP_SIGNALS, signal.SIGCHLD}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


@dataclass
class Child:
    """A process the supervisor started."""

    pid: int
    role: str  # "server", "command" or "watcher"
    started: float = field(default_factory=time.monotonic)
    fds: dict[int, str] = field(default_factory=dict)  # fd -> "report" | "stdout" | "stderr"
    buffers: dict[int, bytes] = field(default_factory=dict)
    stopping: bool = False
    kill_at: float | None = None
    ready: bool = False
    forced_error: bool = False
    exit_code: int | None = None


def fork(close: Iterable[int]) -> int:
    """Fork with signals blocked. In the child (0 returned): default signal dispositions,
    SIGTERM when the parent dies, the fds in ``close`` closed, and the inherited objects
    frozen (out of the collector's sight)."""
    sys.stdout.flush()
    sys.stderr.flush()
    parent = os.getpid()
    # The child's garbage collections skip what it inherits (the preloaded modules): a
    # Celery pool runs gc.collect() before each process it forks, ~40 ms each on that heap.
    gc.freeze()
    with _signals_blocked():
        pid = os.fork()
        if pid == 0:
            _reset_signals_in_child()
    if pid != 0:
        gc.unfreeze()
    if pid == 0:
        _die_with_parent(parent)
        for fd in close:
            with contextlib.suppress(OSError):
                os.close(fd)
    return pid
