"""Readiness probes from the host, through each service's real protocol.

A TCP connect is not a probe: docker-proxy accepts on a published port even when nothing
listens behind it. The Postgres probe logs in the way the API does (TCP, password), so the
unix-socket-only server that initdb runs on first start is never mistaken for the real one."""

from __future__ import annotations

import asyncio
import http.client
import socket

from devstack.spec import Probe


class ProbeFailed(Exception):
    """Not ready yet; the message says what the probe saw."""


def run_probe(probe: Probe, timeout: float = 1.0) -> None:
    """Return when the service answers like a ready one; raise ProbeFailed otherwise."""
    try:
        if probe.kind == "postgres":
            asyncio.run(_postgres(probe, timeout))
        elif probe.kind == "redis":
            _redis(probe, timeout)
        elif probe.kind == "http":
            _http(probe, timeout)
        else:
            raise ValueError(f"unknown probe kind {probe.kind!r}")
    except ProbeFailed:
        raise
    except (TimeoutError, OSError, EOFError) as exc:
        raise ProbeFailed(_describe(exc)) from exc
    except Exception as exc:  # asyncpg's protocol errors have no common base we can name
        raise ProbeFailed(_describe(exc)) from exc


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def _postgres(probe: Probe, timeout: float) -> None:
    import asyncpg

    conn = await asyncpg.connect(
        host=probe.host,
        port=probe.port,
        user=probe.user,
        password=probe.password,
        database=probe.database,
        timeout=timeout,
        ssl=False,
    )
    try:
        await conn.fetchval("SELECT 1", timeout=timeout)
    finally:
        await conn.close(timeout=timeout)


def _redis(probe: Probe, timeout: float) -> None:
    with socket.create_connection((probe.host, probe.port), timeout=timeout) as sock:
        sock.sendall(b"*1\r\n$4\r\nPING\r\n")
        reply = sock.recv(256)
    if reply.startswith(b"+PONG") or reply.startswith(b"-NOAUTH"):
        return
    raise ProbeFailed(
        f"redis answered {reply[:60].decode(errors='replace').strip()!r}"
        if reply
        else "connection closed without a reply"
    )


def _http(probe: Probe, timeout: float) -> None:
    conn = http.client.HTTPConnection(probe.host, probe.port, timeout=timeout)
    try:
        conn.request("GET", probe.path or "/")
        response = conn.getresponse()
        body = response.read(300).decode(errors="replace")
    finally:
        conn.close()
    if response.status != 200:
        raise ProbeFailed(f"HTTP {response.status}: {body.strip()[:200]}")
