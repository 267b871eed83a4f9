"""The project lock: refused or waited for when another process holds it, re-entrant within
one (a pytest run holding it calls `up`). The file lock: waited for, by threads and
processes alike."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.errors import LockBusy
from devstack.usecases.lock import file_lock, lock_path, project_lock

HOLDER = """
import sys
from devstack.usecases.lock import project_lock
with project_lock(sys.argv[1], "up"):
    print("held", flush=True)
    sys.stdin.read()
"""


@pytest.fixture
def name() -> Iterator[str]:
    project = f"dstest-lock-{os.getpid()}-{secrets.token_hex(3)}"
    yield project
    lock_path(project).unlink(missing_ok=True)


def hold(script: str, argument: str) -> subprocess.Popen[str]:
    """Another process running `script`, once it says it holds its lock (it ends when its
    stdin closes)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", script, argument],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def test_reentrant_within_a_process(name: str) -> None:
    with project_lock(name, "pytest"), project_lock(name, "up"):
        pass
    with project_lock(name, "up"):  # released: taken again
        pass


def test_another_process_refused_or_waited_for(name: str) -> None:
    holder = hold(HOLDER, name)
    try:
        busy = f"devstack up \\(pid {holder.pid}\\)"
        with pytest.raises(LockBusy, match=busy), project_lock(name, "pytest"):
            pass
        told: list[str] = []

        def release_once_told(who: str) -> None:
            told.append(who)
            assert holder.stdin is not None
            threading.Thread(target=holder.stdin.close).start()

        with project_lock(name, "pytest", wait=60, on_wait=release_once_told):
            assert told == [f"devstack up (pid {holder.pid})"]
    finally:
        holder.kill()
        holder.wait()


FILE_HOLDER = """
import sys
from pathlib import Path
from devstack.usecases.lock import file_lock
with file_lock(Path(sys.argv[1])):
    print("held", flush=True)
    sys.stdin.read()
"""


def test_a_file_lock_is_waited_for_by_other_threads_and_processes(tmp_path: Path) -> None:
    path = tmp_path / "template.lock"
    entered: list[str] = []

    def take(who: str) -> None:
        with file_lock(path):
            entered.append(who)

    with file_lock(path):  # a thread of the same process waits
        other = threading.Thread(target=take, args=("thread",))
        other.start()
        other.join(timeout=0.3)
        assert other.is_alive() and entered == []
    other.join(timeout=10)
    assert entered == ["thread"]

    holder = hold(FILE_HOLDER, str(path))
    try:
        waiting = threading.Thread(target=take, args=("after the process",))
        waiting.start()
        waiting.join(timeout=0.3)
        assert waiting.is_alive() and entered == ["thread"]
        assert holder.stdin is not None
        holder.stdin.close()  # the holder ends: the kernel releases its lock
        waiting.join(timeout=10)
        assert entered == ["thread", "after the process"]
    finally:
        holder.kill()
        holder.wait()
