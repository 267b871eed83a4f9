"""`exec`: run a command in a container through docker-py and return its exit code.

Non-interactive: the exec's multiplexed output goes to our stdout/stderr as it arrives, and
our stdin (a pipe or file with data) is forwarded, then half-closed so the command sees EOF.
Interactive: a TTY exec, our terminal in raw mode, resized with the terminal."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import stat
import sys
import termios
import threading
import tty
from typing import BinaryIO

from devstack.converge.engine_protocol import Engine, ExecConnection
from devstack.engine.socket import ExecSocket
from devstack.errors import DevstackError, DockerApiError

CHUNK = 65536
NOT_FOUND = (126, 127)  # the engine's codes for a command it could not run


def run_in_container(engine: Engine, container: str, argv: list[str], interactive: bool) -> int:
    """Run `argv`; with `interactive`, attach the terminal (TTY, raw mode, resize)."""
    if interactive:
        term = os.environ.get("TERM")
        exec_id = engine.exec_create(
            container, argv, tty=True, stdin=True, environment=[f"TERM={term}"] if term else None
        )
        _attach_terminal(engine, exec_id)
    else:
        stdin_fd, first = _stdin_to_forward()
        exec_id = engine.exec_create(container, argv, tty=False, stdin=stdin_fd is not None)
        connection = engine.exec_start(exec_id, tty=False)
        _pump_multiplexed(connection, stdin_fd, first)
    code = _exit_code(engine, exec_id)
    if code in NOT_FOUND:
        print(
            f"hint: exit {code} usually means `{argv[0]}` is not in the container "
            "(not installed, not on PATH) or is not executable",
            file=sys.stderr,
        )
    return code


def _exit_code(engine: Engine, exec_id: str) -> int:
    """The exit code; the engine may report it a moment after the output ends."""
    from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed

    retrying = Retrying(
        retry=retry_if_result(lambda code: code is None),
        wait=wait_fixed(0.02),
        stop=stop_after_delay(10),
        retry_error_callback=lambda _: None,
    )
    code = retrying(engine.exec_exit_code, exec_id)
    if code is None:
        raise DockerApiError("the command's output ended but the engine reports no exit code")
    return int(code)


def _stdin_to_forward() -> tuple[int | None, bytes]:
    """Our stdin's fd if it is a pipe or file with data (plus what was read to find out)."""
    try:
        fd = sys.stdin.fileno()
        mode = os.fstat(fd).st_mode
    except (AttributeError, ValueError, OSError):  # no stdin at all, or closed
        return None, b""
    if os.isatty(fd) or stat.S_ISCHR(mode):  # a terminal, /dev/null and the like
        return None, b""
    if stat.S_ISREG(mode) or select.select([fd], [], [], 0)[0]:
        first = os.read(fd, CHUNK)
        return (fd, first) if first else (None, b"")  # b"": empty or closed
    return fd, b""  # a pipe whose writer has not written yet: forward what comes


def _send_stdin(sock: ExecSocket, fd: int, first: bytes) -> None:
    """Copy our stdin to the exec, then half-close: the command reads EOF, output goes on.
    A failure ends the copy only: the output side reports a broken connection."""
    with contextlib.suppress(OSError, DevstackError):
        data = first or os.read(fd, CHUNK)
        while data:
            sock.sendall(data)
            data = os.read(fd, CHUNK)
        sock.shutdown(socket.SHUT_WR)


def _pump_multiplexed(connection: ExecConnection, stdin_fd: int | None, first: bytes) -> None:
    """Demultiplex the exec's frames to our stdout/stderr until the command ends."""
    sock = connection.sock
    if stdin_fd is not None:
        threading.Thread(
            target=_send_stdin, args=(sock, stdin_fd, first), name="exec-stdin", daemon=True
        ).start()
    outputs: dict[int, BinaryIO] = {1: sys.stdout.buffer, 2: sys.stderr.buffer}
    try:
        for kind, data in connection.frames():
            _write(outputs.get(kind, outputs[1]), data)
    finally:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()


def _write(stream: BinaryIO, data: bytes) -> None:
    try:
        stream.write(data)
        stream.flush()
    except BrokenPipeError:  # `exec ... | head`: keep draining so the exit code still comes
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())


def _attach_terminal(engine: Engine, exec_id: str) -> None:
    """Pump our raw terminal <-> the exec's TTY; follow terminal resizes (SIGWINCH)."""
    in_fd, out_fd = sys.stdin.fileno(), sys.stdout.fileno()
    connection = engine.exec_start(exec_id, tty=True)
    sock = connection.sock
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)

    def on_winch(_signum: int, _frame: object) -> None:
        with contextlib.suppress(OSError):
            os.write(wake_w, b"w")

    saved = termios.tcgetattr(in_fd)
    previous = signal.signal(signal.SIGWINCH, on_winch)
    try:
        tty.setraw(in_fd)
        _resize(engine, exec_id, out_fd, in_fd)
        if sock.pending:  # what came with the response's headers (select cannot see it)
            _write_fd(out_fd, sock.recv(len(sock.pending)))
        stdin_open = True
        while True:
            watched: list[int | ExecSocket] = [sock, wake_r, *([in_fd] if stdin_open else [])]
            readable = select.select(watched, [], [])[0]
            if wake_r in readable:
                os.read(wake_r, 64)
                _resize(engine, exec_id, out_fd, in_fd)
            if sock in readable:
                data = sock.recv(CHUNK)
                if not data:
                    break
                _write_fd(out_fd, data)
            if in_fd in readable:
                data = os.read(in_fd, CHUNK)
                if data:
                    sock.sendall(data)
                else:
                    stdin_open = False
                    sock.shutdown(socket.SHUT_WR)
    finally:
        termios.tcsetattr(in_fd, termios.TCSADRAIN, saved)
        signal.signal(signal.SIGWINCH, previous)
        for fd in (wake_r, wake_w):
            os.close(fd)
        sock.close()


def _resize(engine: Engine, exec_id: str, *fds: int) -> None:
    """Give the exec's TTY our terminal's size (the first of `fds` that is a terminal)."""
    for fd in fds:
        try:
            size = os.get_terminal_size(fd)
        except OSError:
            continue
        with contextlib.suppress(DevstackError):  # the command may have ended already
            engine.exec_resize(exec_id, size.lines, size.columns)
        return


def _write_fd(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
