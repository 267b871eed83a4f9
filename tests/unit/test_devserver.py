"""devserver.py on the host, no Docker: real processes serving a tiny FastAPI app.

Each test runs ``python devstack/programs/devserver.py`` against a temporary package, saves files
the way editors do (write a temporary file, rename it over the old one) and polls the server with
a deadline. ``DEVSTACK_TEST_RELOAD_DEADLINE`` (seconds, default 0.5) is how soon after a save
the error page must answer.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest

from devstack.programs.ds_errors import Project, describe, summarize_output

from ..conftest import REPO_ROOT

DEVSERVER = REPO_ROOT / "devstack" / "programs" / "devserver.py"
SAVE_DEADLINE = float(os.environ.get("DEVSTACK_TEST_RELOAD_DEADLINE", "0.5"))
START_DEADLINE = 60.0  # a cold interpreter importing FastAPI on a busy 2-core machine
POLL_INTERVAL = 0.005
T = TypeVar("T")

MAIN = """\
import sys

PRELOADED = "fastapi" in sys.modules  # imported ahead of time by the supervisor?
STALE = "devapp.extra" in sys.modules  # project code must never be
from contextlib import asynccontextmanager

from fastapi import FastAPI

from devapp import extra


@asynccontextmanager
async def lifespan(app):
    extra.start()
    yield


app = FastAPI(lifespan=lifespan)


@app.get("/health")
async def health():
    return {"version": extra.VERSION, "preloaded": PRELOADED, "stale": STALE}
"""

WORKER = """\
import signal

from devapp import extra

print("worker ready", extra.VERSION, flush=True)
signal.pause()
"""


def extra_source(version: int) -> str:
    """A working devapp/extra.py."""
    return f"VERSION = {version}\n\n\ndef start():\n    pass\n"


# name -> (broken extra.py, expected header: summary without the message's details)
BROKEN = {
    "syntax-error": ("VERSION = = 2\n", r"SyntaxError: invalid syntax \(devapp/extra\.py:1\)"),
    "missing-module": (
        "import devstack_no_such_module\nVERSION = 2\n",
        r"ModuleNotFoundError: No module named 'devstack_no_such_module' "
        r"\(devapp/extra\.py:1\)",
    ),
    "lifespan-exception": (
        'VERSION = 2\n\n\ndef start():\n    raise RuntimeError("lifespan boom")\n',
        r"RuntimeError: lifespan boom \(devapp/extra\.py:5\)",
    ),
}
BROKEN_LINE = {"syntax-error": 1, "missing-module": 1, "lifespan-exception": 5}


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: str


@dataclass
class Running:
    """A devserver process, its temporary project and its log."""

    proc: subprocess.Popen[bytes]
    root: Path
    log: Path
    error_file: Path
    port: int = 0
    dropped: list[str] = field(default_factory=list)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def poll(self, check: Callable[[], T | None], timeout: float, what: str) -> T:
        """Call ``check`` until it returns a value; fail with the log after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            result = check()
            if result is not None:
                return result
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} within {timeout} s; devserver log:\n{self.log_text()}")
            if self.proc.poll() is not None:
                pytest.fail(f"devserver exited ({self.proc.returncode}):\n{self.log_text()}")
            time.sleep(POLL_INTERVAL)

    def get(self, path: str = "/health", accept: str = "*/*") -> Response | None:
        """One request on a new connection; None (and noted) if it is refused or dropped."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", path, headers={"Accept": accept, "Connection": "close"})
            raw = conn.getresponse()
            body = raw.read().decode()
            return Response(raw.status, {k.lower(): v for k, v in raw.getheaders()}, body)
        except (
            ConnectionRefusedError,
            ConnectionResetError,
            http.client.RemoteDisconnected,
        ) as exc:
            self.dropped.append(repr(exc))
            return None
        finally:
            conn.close()

    def status_is(
        self, status: int, predicate: Callable[[Response], bool] = lambda r: True
    ) -> Callable[[], Response | None]:
        """A check for ``poll``: the response once it has ``status`` and ``predicate``."""

        def check() -> Response | None:
            response = self.get()
            if response is not None and response.status == status and predicate(response):
                return response
            return None

        return check

    def save(self, relative: str, text: str) -> float:
        """Save like an editor (temporary file renamed over the old one); the save's time."""
        path = self.root / relative
        tmp = path.with_name(f".{path.name}.swp")
        tmp.write_text(text)
        saved = time.monotonic()
        os.replace(tmp, path)
        return saved

    def error_summary(self) -> str | None:
        try:
            return self.error_file.read_text().strip() or None
        except FileNotFoundError:
            return None

    def children(self) -> list[int]:
        """Pids whose parent is the supervisor."""
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == self.proc.pid:
                    pids.append(int(entry.name))
        return pids


def make_project(root: Path) -> None:
    package = root / "devapp"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "main.py").write_text(MAIN)
    (package / "extra.py").write_text(extra_source(1))
    (package / "worker.py").write_text(WORKER)


def launch(root: Path, *args: str) -> Running:
    """Start devserver in ``root`` (port 0: the kernel picks a free one; read from the log)."""
    log = root / "devserver.log"
    error_file = root / "code-error"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                str(DEVSERVER),
                *args,
                "--watch",
                str(root / "devapp"),
                "--error-file",
                str(error_file),
            ],
            cwd=root,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    return Running(proc=proc, root=root, log=log, error_file=error_file)


def stop(running: Running) -> int:
    if running.proc.poll() is None:
        running.proc.send_signal(signal.SIGTERM)
        try:
            return running.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            running.proc.kill()
            running.proc.wait()
    return running.proc.returncode


@pytest.fixture
def project(tmp_path: Path) -> Path:
    make_project(tmp_path)
    return tmp_path


@pytest.fixture
def server_factory(project: Path) -> Iterator[Callable[..., Running]]:
    """Start an HTTP devserver on the temporary project; always stopped afterwards."""
    started: list[Running] = []

    def start(*extra: str) -> Running:
        running = launch(project, "devapp.main:app", "--host", "127.0.0.1", "--port", "0", *extra)
        started.append(running)

        def listening() -> int | None:
            match = re.search(r"listening on http://127\.0\.0\.1:(\d+)", running.log_text())
            return int(match.group(1)) if match else None

        running.port = running.poll(listening, START_DEADLINE, "listening socket")
        running.poll(running.status_is(200), START_DEADLINE, "first 200")
        return running

    yield start
    for running in started:
        stop(running)


def wait_preloaded(running: Running) -> None:
    running.poll(lambda: "preloaded" in running.log_text() or None, START_DEADLINE, "preload")


def gone(pid: int) -> Callable[[], bool | None]:
    """A check for ``poll``: the process has left the process table (no zombie either)."""
    return lambda: not Path(f"/proc/{pid}").exists() or None


@pytest.mark.parametrize("case", list(BROKEN))
def test_code_error_answers_at_once_and_the_fix_restores(
    server_factory: Callable[..., Running], case: str
) -> None:
    server = server_factory()
    wait_preloaded(server)
    broken, header = BROKEN[case]

    saved = server.save("devapp/extra.py", broken)
    error = server.poll(server.status_is(503), SAVE_DEADLINE, "503 after the save")
    elapsed = time.monotonic() - saved
    assert elapsed <= SAVE_DEADLINE

    summary = error.headers["x-devstack-code-error"]
    assert re.fullmatch(header, summary), summary
    assert summary in error.body
    assert f'extra.py", line {BROKEN_LINE[case]}' in error.body  # the traceback's frames
    assert error.headers["content-type"].startswith("text/plain")
    page = server.get(accept="text/html,application/xhtml+xml")
    assert page is not None and page.status == 503
    assert page.headers["content-type"].startswith("text/html")
    assert "<pre>" in page.body and "extra.py" in page.body
    assert server.poll(server.error_summary, 5.0, "error file") == summary

    server.save("devapp/extra.py", extra_source(3))
    fixed = server.poll(
        server.status_is(200, lambda r: '"version":3' in r.body), 10.0, "200 after the fix"
    )
    assert '"stale":false' in fixed.body
    server.poll(lambda: server.error_summary() is None or None, 5.0, "error file removed")
    assert server.dropped == []  # requests queue during a reload: never refused nor dropped


def test_no_traceback_hides_details(server_factory: Callable[..., Running]) -> None:
    server = server_factory("--no-traceback")
    server.save("devapp/extra.py", "VERSION = = 2\n")
    error = server.poll(server.status_is(503), 10.0, "503 after the save")
    assert error.headers["x-devstack-code-error"] == "SyntaxError"
    for secret in ("Traceback", "extra.py", "invalid syntax", "line 1"):
        assert secret not in error.body
    page = server.get(accept="text/html")
    assert page is not None and "extra.py" not in page.body
    # The summary file (read inside the container by tools) keeps the whole line.
    summary = server.poll(server.error_summary, 5.0, "error file")
    assert summary == "SyntaxError: invalid syntax (devapp/extra.py:1)"


def test_third_party_modules_are_preloaded_project_code_is_not(
    server_factory: Callable[..., Running],
) -> None:
    server = server_factory()
    first = server.get()
    assert first is not None and '"preloaded":false' in first.body  # nothing known yet
    wait_preloaded(server)
    server.save("devapp/extra.py", extra_source(2))
    reloaded = server.poll(
        server.status_is(200, lambda r: '"version":2' in r.body), 10.0, "reloaded app"
    )
    assert '"preloaded":true' in reloaded.body
    assert '"stale":false' in reloaded.body


def test_a_crashed_server_is_replaced_by_the_error_page(
    server_factory: Callable[..., Running],
) -> None:
    server = server_factory()
    victim = int(re.findall(r"Started server process \[(\d+)\]", server.log_text())[-1])
    os.kill(victim, signal.SIGKILL)
    error = server.poll(server.status_is(503), 10.0, "503 after the crash")
    assert "exited unexpectedly" in error.headers["x-devstack-code-error"]
    server.save("devapp/extra.py", extra_source(4))
    server.poll(server.status_is(200, lambda r: '"version":4' in r.body), 10.0, "200 again")
    server.poll(lambda: server.error_summary() is None or None, 5.0, "error file removed")


def test_sigterm_stops_everything_and_exits_0(server_factory: Callable[..., Running]) -> None:
    server = server_factory()
    server.save("devapp/extra.py", "VERSION = = 2\n")
    server.poll(server.status_is(503), 10.0, "503 after the save")
    server.poll(server.error_summary, 5.0, "error file")
    children = server.children()
    assert len(children) == 2  # the file watcher and the server

    assert stop(server) == 0
    assert "Traceback" not in server.log_text().split("SIGTERM")[-1]
    for pid in children:
        server.poll(gone(pid), 5.0, f"child {pid} gone")
    assert server.error_summary() is None  # nothing stale for tools to read
    with (
        pytest.raises(ConnectionRefusedError),
        socket.create_connection(("127.0.0.1", server.port), timeout=2),
    ):
        pass
    assert list(server.root.rglob("__pycache__")) == []  # never writes bytecode


def test_command_mode_reports_a_traceback_and_recovers(project: Path) -> None:
    command = f"{sys.executable} -m devapp.worker"
    running = launch(project, "--command", command, "--ready-pattern", r"^worker ready")
    try:
        running.poll(
            lambda: "worker ready 1" in running.log_text() or None, START_DEADLINE, "ready"
        )

        running.save("devapp/extra.py", "VERSION = undefined_name\n")
        summary = running.poll(running.error_summary, 10.0, "error file")
        assert summary == "NameError: name 'undefined_name' is not defined (devapp/extra.py:1)"

        running.save("devapp/extra.py", extra_source(3))
        running.poll(lambda: "worker ready 3" in running.log_text() or None, 10.0, "restart")
        running.poll(lambda: running.error_summary() is None or None, 5.0, "error file removed")
        children = running.children()
    finally:
        code = stop(running)
    assert code == 0
    for pid in children:
        running.poll(gone(pid), 5.0, f"child {pid} gone")


IMPORTS_A_LIBRARY = """\
import signal
import sys

from devapp import extra

print("worker ready", extra.VERSION, "xml.dom.minidom" in sys.modules, flush=True)
import xml.dom.minidom  # noqa: E402  (a library this worker needs)

signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # a graceful stop, as Celery's
signal.pause()
"""


def test_command_mode_preloads_what_the_last_command_imported(project: Path) -> None:
    (project / "devapp" / "imports.py").write_text(IMPORTS_A_LIBRARY)
    command = f"{sys.executable} -m devapp.imports"
    running = launch(project, "--command", command, "--ready-pattern", "^worker ready")
    try:
        running.poll(lambda: "worker ready 1 False" in running.log_text() or None, 10.0, "up")
        running.save("devapp/extra.py", extra_source(2))
        running.poll(lambda: "worker ready 2 True" in running.log_text() or None, 10.0, "again")
    finally:
        assert stop(running) == 0


SLOW_TO_STOP = """\
import signal
import sys
import time

from devapp import extra


def finish(*_):
    print("worker stopping", extra.VERSION, flush=True)
    time.sleep(3)  # the task it was running (a Celery warm shutdown waits for it)
    print("worker finished", extra.VERSION, flush=True)
    sys.exit(0)


signal.signal(signal.SIGTERM, finish)
print("worker ready", extra.VERSION, flush=True)
while True:
    signal.pause()
"""


def test_overlap_starts_the_new_command_while_the_old_one_finishes(project: Path) -> None:
    (project / "devapp" / "slow.py").write_text(SLOW_TO_STOP)
    command = f"{sys.executable} -m devapp.slow"
    running = launch(project, "--command", command, "--ready-pattern", "^worker ready", "--overlap")
    try:
        running.poll(lambda: "worker ready 1" in running.log_text() or None, START_DEADLINE, "up")
        running.save("devapp/extra.py", extra_source(2))
        log = running.poll(
            lambda: text if "worker ready 2" in (text := running.log_text()) else None,
            10.0,
            "the new command",
        )
        assert "worker finished 1" not in log  # started while the old one still works
        log = running.poll(
            lambda: text if "worker finished 1" in (text := running.log_text()) else None,
            10.0,
            "the old command finishing its work",
        )
        assert "killing" not in log  # it stopped on its own, in its graceful time
        assert running.error_summary() is None  # its exit is no error: it was asked to stop
    finally:
        assert stop(running) == 0


SCRIPT = """\
import os
import sys

print("worker ready", "xml.dom.minidom" in sys.modules, os.getppid(), sys.argv[1:], flush=True)
import signal

signal.pause()
"""


@pytest.mark.parametrize("kind", ["module", "console-script"])
def test_command_mode_runs_a_python_program_in_a_forked_child_with_the_preloads(
    project: Path, kind: str
) -> None:
    (project / "devapp" / "preloaded.py").write_text(SCRIPT)
    script = project / "bin" / "tool"  # a console script of this interpreter, like `celery`
    script.parent.mkdir()
    script.write_text(f"#!{sys.executable}\n{SCRIPT}")
    script.chmod(0o755)
    command = f"{sys.executable} -m devapp.preloaded a b" if kind == "module" else f"{script} a b"
    running = launch(project, "--command", command, "--preload", "xml.dom.minidom")
    try:
        # a whole line: the supervisor relays the child's output as it reads it, so a poll
        # may see a line's first part before its end
        line = running.poll(
            lambda: re.search(r"worker ready .*(?=\n)", running.log_text()), START_DEADLINE, "ready"
        ).group(0)
        # forked by the supervisor (not exec'd): the supervisor's imports are there
        assert line == f"worker ready True {running.proc.pid} ['a', 'b']"
        assert "in a forked child" in running.log_text()
    finally:
        assert stop(running) == 0


def test_command_mode_execs_what_is_not_a_python_program(project: Path) -> None:
    command = "sh -c 'echo worker ready; exec sleep 60'"
    running = launch(project, "--command", command, "--ready-pattern", r"^worker ready")
    try:
        running.poll(lambda: "worker ready" in running.log_text() or None, START_DEADLINE, "ready")
        assert "exec'd" in running.log_text()
    finally:
        assert stop(running) == 0


def test_command_mode_reports_a_command_that_ends_with_code_0(project: Path) -> None:
    """Issue 22 item 4: a long-running command (a worker) that exits 0 (e.g. after a manual
    signal) is a failure in a dev stack: reported at once, with its last line, so `up` fails
    fast instead of waiting for a change until its timeout."""
    command = "sh -c 'echo worker ready; echo worker: warm shutdown; exit 0'"
    running = launch(project, "--command", command, "--ready-pattern", r"^worker ready")
    try:
        summary = running.poll(running.error_summary, START_DEADLINE, "error file")
        assert summary == "exited with code 0: worker: warm shutdown"
    finally:
        assert stop(running) == 0


# -- pure helpers ------------------------------------------------------------------------------

CELERY_LIKE_OUTPUT = """\
[2026-01-01 10:00:00,000: INFO/MainProcess] Connected to redis://redis:6379/1
Traceback (most recent call last):
  File "/opt/venv/lib/python3.11/site-packages/celery/bin/celery.py", line 58, in main
    app = find_app(value)
  File "/app/service/worker.py", line 12, in <module>
    from service.tasks import ping
  File "/app/service/tasks.py", line 74
    def ping(:
             ^
SyntaxError: invalid syntax
"""


def test_summarize_output_finds_the_last_traceback_and_project_frame() -> None:
    project = Project(Path("/app"), [Path("/app/service")])
    lines = CELERY_LIKE_OUTPUT.splitlines()
    assert summarize_output(lines, project) == "SyntaxError: invalid syntax (service/tasks.py:74)"
    assert summarize_output(["all good"], project) is None


def test_describe_names_the_innermost_project_frame(tmp_path: Path) -> None:
    project = Project(tmp_path, [tmp_path])
    source = tmp_path / "mod.py"
    source.write_text("def fail():\n    raise ValueError('bad\\nvalue')\n")
    namespace: dict[str, object] = {}
    exec(compile(source.read_text(), str(source), "exec"), namespace)
    with pytest.raises(ValueError) as info:
        namespace["fail"]()  # type: ignore[operator]
    error = describe(info.value, project)
    assert error.summary == "ValueError: bad value (mod.py:2)"
    assert error.kind == "ValueError"
    assert 'mod.py", line 2' in error.details
