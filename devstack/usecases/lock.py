"""One devstack command at a time per project: an advisory file lock, released by the kernel
when the process ends, however it ends. Re-entrant within a process (a pytest run holding it
calls `up`), and a caller may wait for it instead of being refused. `file_lock`: the same
kind of lock on any file, waited for (one template build at a time, across processes and
threads)."""

from __future__ import annotations

import fcntl
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from devstack.errors import LockBusy

POLL_S = 0.1  # how often a waiting process tries the lock again
_held: dict[str, int] = {}  # project -> depth, for the locks this process holds
_guard = threading.Lock()


def lock_path(project: str) -> Path:
    return Path(tempfile.gettempdir()) / f"devstack-{project}.lock"


@contextmanager
def project_lock(
    project: str,
    command: str,
    wait: float = 0.0,
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[None]:
    """Hold `project`'s lock. Busy: LockBusy at once, or after trying for `wait` seconds
    (`on_wait` is told once who holds it). Already held by this process: held again."""
    with _guard:
        if _held.get(project):
            _held[project] += 1
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield
        finally:
            with _guard:
                _held[project] -= 1
        return
    path = lock_path(project)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _acquire(fd, project, wait, on_wait)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"devstack {command} (pid {os.getpid()})".encode(), 0)
        with _guard:
            _held[project] = 1
        try:
            yield
        finally:
            with _guard:
                _held.pop(project, None)
    finally:
        os.close(fd)


def _acquire(fd: int, project: str, wait: float, on_wait: Callable[[str], None] | None) -> None:
    deadline = time.monotonic() + wait
    told = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
        if time.monotonic() >= deadline:
            raise LockBusy(
                f"project {project} is busy: `{holder}` is already working on it",
                hint="wait for it to finish (or stop it), then run this again",
            )
        if on_wait is not None and not told:
            on_wait(holder)
            told = True
        time.sleep(POLL_S)


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on `path` (made if missing), waiting as long as it
    takes. Each call opens its own descriptor, so threads of one process exclude each other
    too; the kernel releases it when the process ends, however it ends."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
