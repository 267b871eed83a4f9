"""A proxy to the Docker engine's unix socket that a test can kill, to break the connection the
way a dying engine, VM, tunnel or network does:

    python -m tests.integration.sockproxy LISTEN TARGET

LISTEN is a unix socket path, or `tcp` for 127.0.0.1 on a free port. One thread per direction
of each connection copies bytes; `ready` (with the port, for tcp) is printed once it listens,
`connection` for each connection accepted.
SIGKILL: the kernel closes every connection at once, mid-stream (the peer reads EOF).
SIGTERM (tcp): every connection is reset (the peer's recv fails with ECONNRESET), then it exits.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import struct
import sys
import threading
from types import FrameType

clients: list[socket.socket] = []


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


def _serve(client: socket.socket, target: str) -> None:
    upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        upstream.connect(target)
    except OSError:
        client.close()
        return
    threading.Thread(target=_pipe, args=(upstream, client), daemon=True).start()
    _pipe(client, upstream)


def _reset_all(_signum: int, _frame: FrameType | None) -> None:
    for client in list(clients):
        with contextlib.suppress(OSError):
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()  # linger 0: a TCP reset, not a FIN
    os._exit(0)


def main(listen: str, target: str) -> None:
    """Accept on `listen`, forward each connection to `target`, until killed."""
    if listen == "tcp":
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.bind(("127.0.0.1", 0))
        ready = f"ready {server.getsockname()[1]}"
        signal.signal(signal.SIGTERM, _reset_all)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(listen)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(listen)
        ready = "ready"
    server.listen(64)
    print(ready, flush=True)
    while True:
        client, _ = server.accept()
        print("connection", flush=True)
        clients.append(client)
        threading.Thread(target=_serve, args=(client, target), daemon=True).start()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
