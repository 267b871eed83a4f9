"""Who is connected to a database, told apart: the stack's own services (their connections come
from the project's containers on the stack's network; devstack closes them for a copy and their
pools reconnect) and every other client (a psql session, an IDE: named, and disconnected only
with --force). Pure: the rows come from pg_stat_activity, the addresses from the engine."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

SHOWN = 3  # clients named in a one-line message; the rest are counted


@dataclass(frozen=True)
class Client:
    """One client backend connected to a database (a row of pg_stat_activity)."""

    pid: int
    application: str  # application_name ("" when the client set none)
    address: str | None  # client_addr; None for a local (unix socket) connection
    since: datetime | None  # backend_start

    def describe(self) -> str:
        """`psql from 172.18.0.1 since 14:02:11` (the local time)."""
        who = self.application or "a client without application_name"
        where = f"from {self.address}" if self.address else "over a local socket"
        when = f" since {self.since.astimezone():%H:%M:%S}" if self.since else ""
        return f"{who} {where}{when} (pid {self.pid})"


def split(clients: Iterable[Client], own: Mapping[str, str]) -> tuple[list[Client], list[Client]]:
    """(the stack's own clients, the others): own ones connect from an address in `own`
    (IP address -> container name)."""
    ours: list[Client] = []
    others: list[Client] = []
    for client in clients:
        (ours if client.address is not None and client.address in own else others).append(client)
    return ours, others


def describe_all(clients: list[Client]) -> str:
    """The first SHOWN clients described, `; `-separated, and how many more."""
    text = "; ".join(client.describe() for client in clients[:SHOWN])
    more = len(clients) - SHOWN
    return f"{text}; and {more} more" if more > 0 else text
