"""devserver's supervisor: binds the socket once, forks servers or runs the command, watches
the sources, restarts on change, reaps children and records code errors."""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import os
import selectors
import shlex
import signal
import socket
import sys
import time
import traceback
import warnings
from collections import deque
from collections.abc import Sequence
from types import FrameType
from typing import Any

try:  # imported as devstack.programs.* (tests, type checker)
    from .ds_runner import (
        STOP_SIGNALS,
        _read_available,
        _write_all,
        log,
        python_program,
        run_python_program,
    )
except ImportError:  # run as a script: this folder is sys.path[0]
    from ds_runner import (  # type: ignore[no-redef,import-not-found]
        STOP_SIGNALS,
        _read_available,
        _write_all,
        log,
        python_program,
        run_python_program,
    )

try:  # imported as devstack.programs.* (tests, type checker)
    from .ds_errors import CodeError, ErrorFile, Project, one_line, summarize_output
except ImportError:  # run as a script: this folder is sys.path[0]
    from ds_errors import CodeError, ErrorFile, Project, one_line, summarize_output  # type: ignore[no-redef,import-not-found]

try:  # imported as devstack.programs.* (tests, type checker)
    from .ds_options import Options
except ImportError:  # run as a script: this folder is sys.path[0]
    from ds_options import Options  # type: ignore[no-redef,import-not-found]

try:  # imported as devstack.programs.* (tests, type checker)
    from .ds_process import Child, fork
    from .ds_server import Reporter, foreign_modules, server_main
    from .ds_watch import _watch_forever
except ImportError:  # run as a script: this folder is sys.path[0]
    from ds_process import Child, fork  # type: ignore[no-redef,import-not-found]
    from ds_server import Reporter, foreign_modules, server_main  # type: ignore[no-redef,import-not-found]
    from ds_watch import _watch_forever  # type: ignore[no-redef,import-not-found]


class Supervisor:
    """Owns the socket, the watcher and the current child; reloads on change."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.project = Project(options.app_dir, options.watch)
        self.selector = selectors.DefaultSelector()
        self.error_file = ErrorFile(options.error_file)
        self.sock: socket.socket | None = None
        self.children: dict[int, Child] = {}
        self.current: Child | None = None
        self.watcher: Child | None = None
        self.reload_pending = False
        self.reload_started: float | None = None
        self.reload_stopped: float | None = None
        self.exiting = False
        self.preload_queue: deque[str] = deque()
        self.preload_seen: set[str] = set()
        self.preload_count = 0
        self.preload_time = 0.0
        self.output_tail: deque[str] = deque(maxlen=400)
        self.started_wall = time.time()
        self.wakeup_r, self.wakeup_w = os.pipe()
        os.set_blocking(self.wakeup_r, False)
        os.set_blocking(self.wakeup_w, False)

    # -- set-up ------------------------------------------------------------------------------

    def bind(self) -> None:
        """Bind and listen once; every server inherits this socket."""
        opts = self.options
        infos = socket.getaddrinfo(
            opts.host, opts.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        try:
            sock.bind(address)
        except OSError as exc:
            sock.close()
            message = f"devserver: cannot bind {opts.host}:{opts.port}: {exc.strerror}"
            raise SystemExit(message) from None
        sock.listen(2048)
        sock.set_inheritable(True)
        self.sock = sock
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        watched = ", ".join(str(w) for w in opts.watch)
        log(f"listening on http://{shown}:{port} (supervisor {os.getpid()}); watching {watched}")

    def install_signals(self) -> None:
        """Signals only write to the wakeup pipe; the main loop handles them."""
        signal.set_wakeup_fd(self.wakeup_w, warn_on_full_buffer=False)
        for sig in (*STOP_SIGNALS, signal.SIGCHLD):
            signal.signal(sig, _noop_handler)
        self.selector.register(self.wakeup_r, selectors.EVENT_READ, ("wakeup", None))

    def preload_now(self, names: Sequence[str]) -> None:
        """Import modules given with --preload before the first server starts."""
        for name in names:
            self.preload_queue.append(name)
        while self.preload_queue:
            self._preload_one()

    # -- children ----------------------------------------------------------------------------

    def _fork(self) -> int:
        """Fork a child (0 returned in it) that holds none of the supervisor's fds."""
        fds = [self.selector.fileno(), self.wakeup_r, self.wakeup_w]
        fds += [fd for child in self.children.values() for fd in child.fds]
        return fork(fds)

    def start_watcher(self) -> None:
        """A forked process runs watchfiles and writes one JSON line per batch of changes."""
        import watchfiles  # noqa: F401  (imported before the fork: the watcher starts at once)

        read_fd, write_fd = os.pipe()
        pid = self._fork()
        if pid == 0:
            code = 1
            try:
                os.close(read_fd)
                if self.sock is not None:
                    self.sock.close()
                code = _watch_forever(self.options, write_fd, self.started_wall)
            except KeyboardInterrupt:
                code = 0
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        os.close(write_fd)
        os.set_blocking(read_fd, False)
        child = Child(pid=pid, role="watcher", fds={read_fd: "changes"})
        self._adopt(child)
        self.watcher = child

    def _adopt(self, child: Child) -> None:
        self.children[child.pid] = child
        for fd in child.fds:
            child.buffers[fd] = b""
            self.selector.register(fd, selectors.EVENT_READ, ("fd", (child, fd)))

    def start_server(self, forced: CodeError | None = None) -> None:
        """Fork a server process on the shared socket."""
        assert self.sock is not None
        read_fd, write_fd = os.pipe()
        pid = self._fork()
        if pid == 0:
            code = 1
            try:
                os.close(read_fd)
                code = server_main(self.options, self.sock, write_fd, forced)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except KeyboardInterrupt:  # Ctrl-C in a terminal: uvicorn re-raises it when done
                code = 0
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        os.close(write_fd)
        os.set_blocking(read_fd, False)
        child = Child(pid=pid, role="server", fds={read_fd: "report"})
        child.forced_error = forced is not None
        self._adopt(child)
        self.current = child

    def start_command(self) -> None:
        """Fork the command in its own process group, its output piped through us: a Python
        program of this interpreter runs in the child with runpy (the supervisor's imports
        are reused), anything else is exec'd."""
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        report_r, report_w = os.pipe()
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
        program = python_program(self.options.command)
        pid = self._fork()
        if pid == 0:
            code = 127
            inherited = set(sys.modules)
            try:
                os.setpgid(0, 0)
                os.dup2(out_w, 1)
                os.dup2(err_w, 2)
                for fd in (out_w, err_w, out_r, err_r, report_r):
                    os.close(fd)
                os.chdir(self.options.app_dir)
                if program is None:
                    os.execvpe(self.options.command[0], list(self.options.command), env)
                os.environ.update(env)
                code = run_python_program(*program)
                with contextlib.suppress(BaseException):
                    atexit._run_exitfuncs()  # what the interpreter does at exit (logging...)
                if self.options.auto_preload:  # for the next start: what this one imported
                    names = foreign_modules(self.project, inherited)
                    Reporter(report_w).send("modules", names=names)
            except BaseException as exc:
                os.write(2, f"devserver: cannot run {self.options.command[0]}: {exc}\n".encode())
            finally:
                with contextlib.suppress(BaseException):
                    sys.stdout.flush()
                    sys.stderr.flush()
                os._exit(code)
        for fd in (out_w, err_w, report_w):
            os.close(fd)
        for fd in (out_r, err_r, report_r):
            os.set_blocking(fd, False)
        fds = {out_r: "stdout", err_r: "stderr", report_r: "report"}
        child = Child(pid=pid, role="command", fds=fds)
        self.output_tail.clear()
        self._adopt(child)
        self.current = child
        how = "in a forked child" if program else "exec'd"
        log(f"started {shlex.join(self.options.command)} ({how}, pid {pid})")

    def start_current(self, forced: CodeError | None = None) -> None:
        """Start the server or the command, with what the last one imported preloaded."""
        while self.preload_queue:
            self._preload_one()
        if self.options.command:
            self.start_command()
        else:
            self.start_server(forced)

    def stop(self, child: Child, *, kill_after: float) -> None:
        """SIGTERM now, SIGKILL (the whole group for a command) after ``kill_after`` seconds."""
        if child.stopping or child.exit_code is not None:
            return
        child.stopping = True
        child.kill_at = time.monotonic() + kill_after
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signal.SIGTERM)

    def _kill_overdue(self) -> None:
        now = time.monotonic()
        for child in list(self.children.values()):
            if child.kill_at is not None and now >= child.kill_at and child.exit_code is None:
                log(f"{child.role} {child.pid} did not stop in time: killing it")
                child.kill_at = None
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    if child.role == "command":
                        os.killpg(child.pid, signal.SIGKILL)
                    else:
                        os.kill(child.pid, signal.SIGKILL)

    # -- events ------------------------------------------------------------------------------

    def _on_wakeup(self) -> None:
        data = _read_available(self.wakeup_r) or b""
        for signum in data:
            if signum in STOP_SIGNALS and not self.exiting:
                log(f"{signal.Signals(signum).name}: stopping")
                self.exiting = True
        self._reap()

    def _reap(self) -> None:
        """waitpid every exited child (also orphans reparented to us when we are PID 1)."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = self.children.get(pid)
            if child is not None:
                child.exit_code = os.waitstatus_to_exitcode(status)
                self._on_exit(child)

    def _on_exit(self, child: Child) -> None:
        if child.role == "command":
            # Whatever the command left in its process group (pool workers of a crashed
            # master, say) must not outlive it: a restart starts from nothing.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pid, signal.SIGKILL)
        for fd in list(child.fds):
            self._drain(child, fd, final=True)
        del self.children[child.pid]
        if child is self.watcher:
            self.watcher = None
            if not self.exiting:
                log(f"the file watcher exited (code {child.exit_code}): reloading is off")
            return
        if child is not self.current:
            if child.role == "command":
                log(f"the old command {child.pid} exited (code {child.exit_code})")
            return
        self.current = None
        if self.exiting:
            return
        if child.stopping:
            self.reload_stopped = time.monotonic()
            if self.reload_pending:
                self.reload_pending = False
                self.start_current()
            return
        self._on_unexpected_exit(child)

    def _on_unexpected_exit(self, child: Child) -> None:
        code = child.exit_code
        if child.role == "command":
            # A long-running command that ends, even with code 0 (a worker stopped by hand),
            # is reported: whoever waits for it (`up`, `status`) learns it at once.
            lines = list(self.output_tail)
            summary = summarize_output(lines, self.project)
            if summary is None:
                last = next((line for line in reversed(lines) if line.strip()), "")
                summary = one_line(f"exited with code {code}" + (f": {last}" if last else ""))
            self.error_file.set(summary)
            log(f"code error: {summary}; waiting for a change")
            return
        reason = f"the server process exited unexpectedly (code {code})"
        if child.forced_error:
            log(f"{reason} while serving the error page; waiting for a change")
            return
        summary = self.error_file.current or reason
        log(f"{reason}; serving a 503 page until the next change")
        forced = CodeError(
            summary=summary, kind="ServerExited", details=f"{reason}: see the server's log.\n"
        )
        self.error_file.set(summary)
        self.start_server(forced)

    def _drain(self, child: Child, fd: int, final: bool = False) -> None:
        """Read what ``fd`` holds; close it at end of file (or when its process is gone)."""
        try:
            data = _read_available(fd)
        except OSError:
            data = None
        if data:
            self._on_data(child, fd, data)
        if data is None or final:
            rest = child.buffers.pop(fd, b"")
            if rest:
                self._on_line(child, fd, rest)
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(fd)
            with contextlib.suppress(OSError):
                os.close(fd)
            child.fds.pop(fd, None)

    def _on_data(self, child: Child, fd: int, data: bytes) -> None:
        stream = child.fds[fd]
        if stream in {"stdout", "stderr"}:
            _write_all(1 if stream == "stdout" else 2, data)
        buffer = child.buffers.get(fd, b"") + data
        *lines, rest = buffer.split(b"\n")
        child.buffers[fd] = rest
        for line in lines:
            self._on_line(child, fd, line)

    def _on_line(self, child: Child, fd: int, raw: bytes) -> None:
        stream = child.fds.get(fd, "")
        text = raw.decode("utf-8", "replace")
        if stream == "changes":
            self._on_changes(json.loads(text))
        elif stream == "report":
            self._on_report(child, json.loads(text))
        else:
            self.output_tail.append(text.rstrip("\r"))
            pattern = self.options.ready_pattern
            if child is self.current and pattern is not None and pattern.search(text):
                self._command_ready(child)

    def _command_ready(self, child: Child) -> None:
        if child.ready:
            return
        child.ready = True
        if self.error_file.current is not None:
            log("the command is up again")
        self.error_file.clear()
        if self.reload_started is not None:
            log(f"restarted in {time.monotonic() - self.reload_started:.3f} s")
            self.reload_started = None

    def _on_report(self, child: Child, message: dict[str, Any]) -> None:
        event = message.get("event")
        if event == "error" and child is self.current:
            summary = str(message.get("summary", ""))
            self.error_file.set(summary)
            log(f"code error: {summary}; every request gets a 503 until the next change")
        elif event == "ready" and child is self.current:
            child.ready = True
            self.error_file.clear()
            self._log_ready(child)
        elif event == "modules":
            for name in message.get("names", []):
                if name not in sys.modules and name not in self.preload_seen:
                    self.preload_seen.add(name)
                    self.preload_queue.append(name)

    def _log_ready(self, child: Child) -> None:
        now = time.monotonic()
        if self.reload_started is None:
            log(f"ready in {now - child.started:.2f} s")
            return
        stop = (self.reload_stopped or child.started) - self.reload_started
        log(
            f"reloaded in {now - self.reload_started:.3f} s (old server stopped in "
            f"{stop:.3f} s, new one ready in {now - child.started:.3f} s)"
        )
        self.reload_started = None

    def _on_changes(self, batch: dict[str, Any]) -> None:
        paths = [str(p) for p in batch.get("paths", [])]
        newest = float(batch.get("newest_mtime", 0.0))
        shown = ", ".join(self.project.display(p) for p in paths[:3])
        if len(paths) > 3:
            shown += f" and {len(paths) - 3} more"
        seen = f" (seen {1000 * (time.time() - newest):.0f} ms after the save)" if newest else ""
        log(f"{shown} changed{seen}; reloading")
        if self.exiting:
            return
        self.reload_started = time.monotonic()
        self.reload_stopped = None
        current = self.current
        if current is None:
            self.start_current()
        elif self.options.overlap:
            self.stop(current, kill_after=self.options.graceful_timeout + 2.0)
            log(f"{current.pid} finishes its work beside the new command")
            self.start_current()
        else:
            self.reload_pending = True
            self.stop(current, kill_after=self.options.graceful_timeout + 2.0)

    def _preload_one(self) -> None:
        """Import the next queued module (failures are ignored: the server imports it)."""
        name = self.preload_queue.popleft()
        if name not in sys.modules:
            started = time.perf_counter()
            before = len(sys.modules)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    importlib.import_module(name)
                except KeyboardInterrupt:
                    raise
                except BaseException:  # anything a third-party import may raise
                    pass
            self.preload_count += len(sys.modules) - before
            self.preload_time += time.perf_counter() - started
        if not self.preload_queue and self.preload_count:
            log(
                f"preloaded {self.preload_count} modules in {self.preload_time:.2f} s "
                f"({len(sys.modules)} loaded in the supervisor)"
            )
            self.preload_count = 0
            self.preload_time = 0.0

    # -- main loop ---------------------------------------------------------------------------

    def _timeout(self) -> float | None:
        deadlines = [c.kill_at for c in self.children.values() if c.kill_at is not None]
        current = self.current
        if (
            current is not None
            and current.role == "command"
            and not current.ready
            and self.options.ready_pattern is None
        ):
            deadlines.append(current.started + self.options.ready_after)
        if not deadlines:
            return 0.0 if self.preload_queue else None
        return max(0.0, min(deadlines) - time.monotonic())

    def _command_ready_by_time(self) -> None:
        current = self.current
        if (
            current is not None
            and current.role == "command"
            and not current.ready
            and self.options.ready_pattern is None
            and time.monotonic() - current.started >= self.options.ready_after
        ):
            self._command_ready(current)

    def _dispatch(self, timeout: float | None) -> bool:
        events = self.selector.select(timeout)
        for key, _ in events:
            kind, data = key.data
            if kind == "wakeup":
                self._on_wakeup()
            else:
                child, fd = data
                if fd in child.fds:
                    self._drain(child, fd)
        self._kill_overdue()
        self._command_ready_by_time()
        return bool(events)

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; returns the exit code."""
        self.install_signals()
        if not self.options.command:
            self.bind()
        if self.options.preload:
            self.preload_now(self.options.preload)
        self.start_watcher()
        self.start_current()
        while not self.exiting:
            busy = self._dispatch(self._timeout())
            if not busy and self.preload_queue and not self.exiting:
                self._preload_one()
        return self.shutdown()

    def shutdown(self) -> int:
        """Stop every child (gracefully, then by force), remove the error file, exit 0."""
        for child in list(self.children.values()):
            self.stop(child, kill_after=self.options.graceful_timeout + 2.0)
        deadline = time.monotonic() + self.options.graceful_timeout + 5.0
        while self.children and time.monotonic() < deadline:
            timeout = self._timeout()
            self._dispatch(0.5 if timeout is None else min(timeout, 0.5))
        self.error_file.clear()
        if self.sock is not None:
            self.sock.close()
        if self.children:
            log(f"{len(self.children)} child process(es) did not exit")
            return 1
        log("stopped")
        return 0


def _noop_handler(signum: int, frame: FrameType | None) -> None:
    """Signals are handled from the wakeup pipe, in the main loop."""
