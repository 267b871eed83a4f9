"""The Docker Engine API's plain request/response calls over a local unix socket, with the
standard library only. Short commands (`status`, a no-op `up`, `down`) make nothing but such
calls, so they never import docker-py and requests (about 0.15 s of a 0.4 s command). Streams,
exec, builds and container creation stay with docker-py (devstack.engine.docker)."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from devstack.engine.errors import SocketBroken, transport_error
from devstack.errors import DockerApiError

UNIX_SCHEME = "unix://"


class _UnixConnection(http.client.HTTPConnection):
    """http.client over a unix socket."""

    def __init__(self, path: str, timeout: float | None):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def socket_path(host: str, client_kwargs: Mapping[str, Any]) -> str | None:
    """The socket file of a plain `unix://` endpoint; None for TCP, TLS or ssh endpoints."""
    if host.startswith(UNIX_SCHEME) and "tls" not in client_kwargs:
        return host.removeprefix(UNIX_SCHEME)
    return None


def api_path(path: str, params: Mapping[str, Any] | None = None) -> str:
    """`/containers/ID/json?all=1`: unversioned (the engine answers at its own version), with
    the parameters form-encoded (dicts, e.g. `filters`, as JSON; booleans as 0/1)."""
    query = {
        key: json.dumps(value)
        if isinstance(value, dict)
        else int(value)
        if isinstance(value, bool)
        else value
        for key, value in (params or {}).items()
        if value is not None
    }
    return quote(path) + (f"?{urlencode(query)}" if query else "")


@dataclass(frozen=True)
class SocketApi:
    """One connection per call (a unix connect costs microseconds), so threads may share it."""

    path: str
    timeout: float | None = 120.0

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        """Send one request (`path` from `api_path`); the status and the whole body.
        SocketBroken when the engine cannot be reached or the connection breaks."""
        connection = _UnixConnection(self.path, self.timeout)
        headers = {"Content-Type": "application/json"} if body is not None else {}
        try:
            connection.request(
                method, path, None if body is None else json.dumps(body), headers=headers
            )
            response = connection.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise SocketBroken(f"{method} {path}: {exc}") from exc
        finally:
            connection.close()


def refusal(status: int, body: bytes, action: str) -> DockerApiError:
    """The engine's refusal (an HTTP status of 400 or more) as devstack's error."""
    try:
        message = str(json.loads(body).get("message") or "")
    except (ValueError, AttributeError):
        message = body.decode(errors="replace").strip()
    return DockerApiError(f"Docker refused to {action}: {message or status}", status=status)


class ExecSocket:
    """An exec's hijacked socket whose transport failures (the engine, or the connection to it,
    gone: reset, broken pipe, TLS error) are devstack errors, mapped like those of every other
    call (errors.transport_error). Selectable (fileno)."""

    def __init__(self, sock: socket.socket, pending: bytes = b""):
        self._sock = sock
        self.pending = pending  # output read with the response's headers: returned first

    def fileno(self) -> int:
        """The socket's file descriptor (for select)."""
        return self._sock.fileno()

    def recv(self, size: int) -> bytes:
        """Up to `size` bytes of output; b"" once the command's output ended."""
        if self.pending:
            data, self.pending = self.pending[:size], self.pending[size:]
            return data
        try:
            return self._sock.recv(size)
        except OSError as exc:
            raise transport_error(exc, "read the command's output") from exc

    def sendall(self, data: bytes) -> None:
        """Send input to the command."""
        try:
            self._sock.sendall(data)
        except OSError as exc:
            raise transport_error(exc, "send input to the command") from exc

    def shutdown(self, how: int) -> None:
        """Half- or fully close; a connection that is gone already is closed enough."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(how)

    def close(self) -> None:
        """Close the socket; one whose far end is gone already is closed enough (docker-py's
        ssh transport flushes into a finished `ssh` process: BrokenPipeError)."""
        with contextlib.suppress(OSError):
            self._sock.close()
