"""The engine's following streams and raw outputs, as devstack reads them: a container's log
stream and a project's container events (each closable from another thread), the payloads of
a multiplexed non-TTY output, and the start of an exec's output that the HTTP reader buffered."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from typing import Any

from devstack.converge.engine_protocol import ContainerEvent
from devstack.declare import labels
from devstack.engine.errors import docker_errors


class LogStream:
    """A following log stream (bytes chunks) that another thread may close to end it."""

    def __init__(self, raw: Any):
        self._raw = raw

    def __iter__(self) -> Iterator[bytes]:
        with docker_errors("follow container logs"):
            yield from self._raw

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._raw.close()


class ContainerEvents:
    """A following stream of a project's container events; `close` (any thread) ends it."""

    def __init__(self, raw: Any):
        self._raw = raw

    def __iter__(self) -> Iterator[ContainerEvent]:
        with docker_errors("follow engine events"):
            for item in self._raw:
                actor = item.get("Actor") or {}
                attributes = actor.get("Attributes") or {}
                yield ContainerEvent(
                    service=str(attributes.get(labels.SERVICE, "")),
                    action=str(item.get("Action") or item.get("status") or ""),
                    container=str(actor.get("ID") or item.get("id") or ""),
                )

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._raw.close()


def demultiplex(raw: bytes) -> bytes:
    """The payloads of a non-TTY stream's frames (8-byte header: stream, 0, 0, 0, size as
    4 bytes big-endian), stdout and stderr in the order written."""
    out = bytearray()
    at = 0
    while at + 8 <= len(raw):
        size = int.from_bytes(raw[at + 4 : at + 8], "big")
        out += raw[at + 8 : at + 8 + size]
        at += 8 + size
    return bytes(out)


def read_with_headers(wrapped: Any, sock: socket.socket) -> bytes:
    """The start of the output that http.client's buffered reader took in with the response's
    headers: lost when only the raw socket is read (a command's first line went missing on
    TCP engines, about one run in two)."""
    response = getattr(wrapped, "_response", None)
    reader = getattr(getattr(getattr(response, "raw", None), "_fp", None), "fp", None)
    if reader is None or not hasattr(reader, "peek"):
        return b""
    sock.setblocking(False)  # only what is buffered: an empty buffer must not wait for more
    try:
        return bytes(reader.peek())
    except (BlockingIOError, OSError, ValueError):
        return b""
    finally:
        sock.setblocking(True)
