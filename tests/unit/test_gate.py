"""gate.py on the host, no Docker: a real process held until its release signal, then running
its program in the same process (runpy) or exec'ing it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ..conftest import REPO_ROOT

GATE = REPO_ROOT / "devstack" / "programs" / "gate.py"
DEADLINE = 30.0

PROGRAM = """\
import os
import signal
import sys

print("running", "xml.dom.minidom" in sys.modules, os.getpid(), sys.argv[1:], sys.path[0],
      flush=True)
os.kill(os.getpid(), signal.SIGUSR2)  # a release re-sent after the release: ignored
print("still running", flush=True)
sys.exit(int(sys.argv[1]))
"""


def start(
    tmp_path: Path, *program: str, preload: str = "xml.dom.minidom,no_such_module"
) -> subprocess.Popen[str]:
    marker = tmp_path / "released"
    return subprocess.Popen(
        [sys.executable, str(GATE), "--preload", preload, "--marker", str(marker), "--", *program],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_held(proc: subprocess.Popen[str]) -> list[str]:
    """The gate's log lines up to "held until ..." (it listens from then on)."""
    assert proc.stderr is not None
    lines: list[str] = []
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        lines.append(line)
        if "held until SIGUSR2" in line or not line:
            return lines
    pytest.fail(f"not held: {lines}")


@pytest.fixture
def program(tmp_path: Path) -> Path:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "prog.py").write_text(PROGRAM)
    return tmp_path


def test_holds_until_released_then_runs_the_module_in_its_own_process(program: Path) -> None:
    proc = start(program, sys.executable, "-m", "pkg.prog", "3", "x")
    lines = wait_held(proc)
    assert any("cannot preload no_such_module" in line for line in lines)
    assert proc.poll() is None  # held: the program has not run
    proc.send_signal(signal.SIGUSR2)
    out, err = proc.communicate(timeout=DEADLINE)
    assert proc.returncode == 3
    pid = proc.pid
    assert out.splitlines() == [
        f"running True {pid} ['3', 'x'] {program}",  # same process, preloads kept, cwd first
        "still running",
    ]
    assert (program / "released").exists()
    # released once (the marker): a restart runs at once, with no preloads
    again = start(program, sys.executable, "-m", "pkg.prog", "0")
    out, err = again.communicate(timeout=DEADLINE)
    assert again.returncode == 0 and "released before" in err and "running False" in out


def test_a_script_runs_in_process_and_anything_else_is_execed(program: Path) -> None:
    script = program / "pkg" / "prog.py"
    proc = start(program, sys.executable, str(script), "0")
    wait_held(proc)
    proc.send_signal(signal.SIGUSR2)
    out, _ = proc.communicate(timeout=DEADLINE)
    assert proc.returncode == 0
    assert out.splitlines()[0] == f"running True {proc.pid} ['0'] {script.parent}"
    os.unlink(program / "released")
    proc = start(program, "sh", "-c", "echo exec $$")
    wait_held(proc)
    proc.send_signal(signal.SIGUSR2)
    out, _ = proc.communicate(timeout=DEADLINE)
    assert proc.returncode == 0 and out.strip() == f"exec {proc.pid}"


def test_a_stop_signal_while_held_exits_at_once(program: Path) -> None:
    proc = start(program, sys.executable, "-m", "pkg.prog", "0")
    wait_held(proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=DEADLINE)
    assert proc.returncode == 143 and out == "" and "SIGTERM while held" in err
    assert not (program / "released").exists()


def test_a_release_during_the_preloads_stops_them(program: Path) -> None:
    # the first preload sends the release itself: the next one is left to the program
    (program / "pkg" / "sender.py").write_text(
        "import os, signal\nos.kill(os.getpid(), signal.SIGUSR2)\n"
    )
    proc = start(
        program, sys.executable, "-m", "pkg.prog", "0", preload="pkg.sender,xml.dom.minidom"
    )
    out, err = proc.communicate(timeout=DEADLINE)
    assert proc.returncode == 0, err
    assert "released while preloading: 1 modules left" in err
    assert out.startswith("running False ")


def test_the_program_exits_as_under_python_atexit_and_traceback_included(program: Path) -> None:
    (program / "pkg" / "fails.py").write_text(
        "import atexit\n"
        "atexit.register(lambda: print('atexit ran', flush=True))\n"
        "print('buffered, not flushed')\n"
        "raise ValueError('boom')\n"
    )
    (program / "released").write_text("")  # released before: runs at once
    proc = start(program, sys.executable, "-m", "pkg.fails")
    out, err = proc.communicate(timeout=DEADLINE)
    assert proc.returncode == 1
    assert out.splitlines() == ["buffered, not flushed", "atexit ran"]
    assert "Traceback" in err and "ValueError: boom" in err
