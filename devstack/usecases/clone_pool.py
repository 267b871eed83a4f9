"""Per-test clones of the template (the pytest plugin's `devstack_fresh_dsn`), made ahead.

A test should not wait for its database: a background thread keeps `AHEAD` clones ready on
one admin connection, and drops the used ones on another, so a clone is never queued behind
a drop. Clones are file copies (`STRATEGY FILE_COPY`): Postgres' default since 15 writes the
whole template through the WAL, and every `DROP DATABASE` forces a checkpoint that writes the
clones made ahead a second time; a file copy writes them once (about half the disk writes,
1.8x the clones per second measured: bench/README.md).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from devstack.usecases.databases import (
    RESTART_WAIT_S,
    Server,
    clone_database,
    connect_waiting,
    drop_database,
)

T = TypeVar("T")

AHEAD = 2  # clones kept ready per process
# a server that can be renewed (made again) is not waited for long: it may be elsewhere now
RENEWABLE_WAIT_S = 3.0


class _Connection:
    """One admin connection used one statement at a time; reconnects (waiting for a
    restarting Postgres) when it broke."""

    def __init__(self, server: Server, wait: float = RESTART_WAIT_S) -> None:
        self.server = server
        self.wait = wait  # how long a lost connection is retried
        self.conn: Any = None
        self.lock: asyncio.Lock | None = None

    async def do(self, work: Callable[[Any], Awaitable[T]]) -> T:
        import asyncpg

        if self.lock is None:
            self.lock = asyncio.Lock()
        async with self.lock:
            for attempt in (1, 2):
                if self.conn is None or self.conn.is_closed():
                    self.conn = await connect_waiting(self.server, self.wait)
                try:
                    return await work(self.conn)
                except (OSError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError):
                    self.conn = None
                    if attempt == 2:
                        raise
            raise AssertionError("unreachable")

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()


class ClonePool:
    """Per-test clones on `server` for one process: `take` hands out a clone made ahead and
    orders the next; `release` drops a used one in the background.

    `renew`: the server made whole again (e.g. a scratch server restarted mid-run: its memory,
    the template, is gone, and it listens on another port); called once when a clone cannot
    be had, with connections retried only `RENEWABLE_WAIT_S` before that."""

    def __init__(
        self,
        server: Server,
        template: str,
        prefix: str,
        renew: Callable[[], Server] | None = None,
    ) -> None:
        self._template, self._prefix, self._renew = template, prefix, renew
        self._count = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._ready: deque[concurrent.futures.Future[str]] = deque()
        self._pending: list[concurrent.futures.Future[None]] = []
        self._use(server)

    def _use(self, server: Server) -> None:
        """Make clones on `server` from now on (the ones made ahead elsewhere are forgotten)."""
        wait = RESTART_WAIT_S if self._renew is None else RENEWABLE_WAIT_S
        self.server = server
        self._maker, self._dropper = _Connection(server, wait), _Connection(server, wait)
        self._ready.clear()

    def _submit(self, coro: Awaitable[T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self._loop)  # type: ignore[arg-type]

    def _make(self) -> concurrent.futures.Future[str]:
        self._count += 1
        name = f"{self._prefix}_t{self._count}"

        async def make(conn: Any) -> str:
            await drop_database(conn, name)  # a leftover of a crashed run of the same name
            await clone_database(conn, name, self._template, file_copy=True)
            return name

        return self._submit(self._maker.do(make))

    def take(self) -> str:
        """A fresh clone's name (one made ahead), and order the next; once the server is
        renewed (see the class) when none can be had."""
        if self._renew is None:
            return self._take()
        try:
            return self._take()
        except Exception:  # a lost server: whatever it raised, renewing it is the cure
            self._use(self._renew())
            return self._take()

    def _take(self) -> str:
        """A clone made ahead, once the server answers: a clone made before a Postgres restart
        (by an earlier test) is only usable once the restarted server accepts connections."""

        async def answers(conn: Any) -> None:
            await conn.fetchval("SELECT 1")

        if not self._ready:
            self._ready.append(self._make())
        future = self._ready.popleft()
        while len(self._ready) < AHEAD:  # the next ones are ordered before this one is waited
            self._ready.append(self._make())
        name = future.result()
        self._submit(self._maker.do(answers)).result()
        return name

    def release(self, name: str) -> None:
        """Drop `name` in the background (beside the clones being made)."""
        self._pending.append(self._submit(self._dropper.do(lambda conn: drop_database(conn, name))))

    def close(self) -> None:
        """Drop the clones made ahead and not used, wait for the drops, stop the thread."""
        try:
            while self._ready:
                with contextlib.suppress(Exception):
                    self.release(self._ready.popleft().result())
            for future in self._pending:
                with contextlib.suppress(Exception):
                    future.result()
            for connection in (self._maker, self._dropper):
                with contextlib.suppress(Exception):
                    self._submit(connection.close()).result()
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()
