"""A plain ASGI app: `/` greets, `/ready` answers 200 once it can query its Postgres."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import asyncpg

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


async def database_answers() -> bool:
    """Whether `SELECT 1` runs on DATABASE_URL."""
    try:
        conn = await asyncpg.connect(os.environ["DATABASE_URL"], timeout=2)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    try:
        return await conn.fetchval("SELECT 1") == 1
    finally:
        await conn.close()


async def respond(send: Send, status: int, text: str) -> None:
    body = text.encode()
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["type"] != "http":
        return
    if scope["path"] == "/ready":
        ok = await database_answers()
        await respond(send, 200 if ok else 503, "ready\n" if ok else "database unreachable\n")
    elif scope["path"] == "/":
        await respond(send, 200, "hello from the asgi-app example\n")
    else:
        await respond(send, 404, "not found\n")
