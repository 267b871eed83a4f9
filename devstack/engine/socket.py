"""The Docker Engine API's plain request/response calls over a local unix socket, with the
standard library only. Short commands (`status`, a no-op `up`, `down`) make nothing but such
calls, so they never import docker-py and requests (about 0.15 s of a 0.4 s command), nor
http.client (~15 ms with email and ssl, a tenth of a `status`): one request per connection
(`Connection: close`), the answer read to its end. Streams, exec, builds and container
creation stay with docker-py (devstack.engine.docker)."""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from devstack.engine.errors import SocketBroken, transport_error
from devstack.errors import DockerApiError

UNIX_SCHEME = "unix://"


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
        raw = self._exchange(method, path, body)
        try:
            return parse_response(raw)
        except ValueError as exc:
            raise SocketBroken(f"{method} {path}: {exc}") from exc

    def api_version(self) -> str:
        """The engine's API version from the header of `GET /_ping` ("" if it sends none):
        a ping costs ~0.5 ms where `GET /version` asks containerd too (6-13 ms)."""
        try:
            return _head(self._exchange("GET", "/_ping"))[1].get("api-version", "")
        except ValueError as exc:
            raise SocketBroken(f"GET /_ping: {exc}") from exc

    def _exchange(self, method: str, path: str, body: Any = None) -> bytes:
        """One request on its own connection; the whole raw response."""
        data = b"" if body is None else json.dumps(body).encode()
        head = f"{method} {path} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n"
        if body is not None:
            head += "Content-Type: application/json\r\n"
        if body is not None or method in {"POST", "PUT"}:  # as http.client does
            head += f"Content-Length: {len(data)}\r\n"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
            sock.sendall(head.encode() + b"\r\n" + data)
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
            return b"".join(chunks)
        except OSError as exc:
            raise SocketBroken(f"{method} {path}: {exc}") from exc
        finally:
            sock.close()


def parse_response(raw: bytes) -> tuple[int, bytes]:
    """The status and body of a whole HTTP/1.1 response (fixed length, chunked, or up to
    the connection's end); ValueError when it is cut short or malformed."""
    status, headers, rest = _head(raw)
    if status in {204, 304} or 100 <= status < 200:
        return status, b""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return status, _dechunk(rest)
    if "content-length" in headers:
        length = int(headers["content-length"])
        if len(rest) < length:
            raise ValueError(f"the body ended after {len(rest)} of {length} bytes")
        return status, rest[:length]
    return status, rest


def _head(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """A response's status, its headers (names lowercased) and what follows them."""
    head, sep, rest = raw.partition(b"\r\n\r\n")
    if not sep:
        raise ValueError("the connection closed before the response's headers ended")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    version, _, code = status_line.partition(" ")
    if not version.startswith("HTTP/"):
        raise ValueError(f"not an HTTP response: {status_line[:80]!r}")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(code.split(" ", 1)[0]), headers, rest


def _dechunk(rest: bytes) -> bytes:
    """A chunked body's payload; ValueError when the last (empty) chunk is missing."""
    out = bytearray()
    at = 0
    while True:
        end = rest.find(b"\r\n", at)
        if end < 0:
            raise ValueError("the chunked body ended early")
        size = int(rest[at:end].split(b";", 1)[0], 16)
        if size == 0:
            return bytes(out)
        start = end + 2
        if len(rest) < start + size:
            raise ValueError("the chunked body ended early")
        out += rest[start : start + size]
        at = start + size + 2


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
