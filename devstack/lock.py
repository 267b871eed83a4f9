"""One devstack command at a time per project: an advisory file lock, released by the kernel
when the process ends, however it ends."""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from devstack.errors import LockBusy


def lock_path(project: str) -> Path:
    return Path(tempfile.gettempdir()) / f"devstack-{project}.lock"


@contextmanager
def project_lock(project: str, command: str) -> Iterator[None]:
    path = lock_path(project)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            raise LockBusy(
                f"project {project} is busy: `{holder}` is already working on it",
                hint="wait for it to finish (or stop it), then run this again",
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"devstack {command} (pid {os.getpid()})".encode(), 0)
        yield
    finally:
        os.close(fd)
