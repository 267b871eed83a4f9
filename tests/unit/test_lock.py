"""The project lock: refused or waited for when another process holds it, re-entrant within
one (a pytest run holding it calls `up`)."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from devstack.errors import LockBusy
from devstack.usecases.lock import lock_path, project_lock

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


def test_reentrant_within_a_process(name: str) -> None:
    with project_lock(name, "pytest"), project_lock(name, "up"):
        pass
    with project_lock(name, "up"):  # released: taken again
        pass


def test_another_process_refused_or_waited_for(name: str) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, name],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
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
