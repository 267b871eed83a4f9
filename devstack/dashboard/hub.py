"""The dashboard's one view of the stack, shared by every open tab.

One thread follows the engine's container events (through the use cases) and re-reads the
services' rows when something happens; one follower reads every service's logs; actions run
one at a time on their own thread. Whatever changes is encoded once as a server-sent event and
queued to each connected client: a tab costs a queue, never a request to Docker."""

from __future__ import annotations

import contextlib
import json
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from devstack.converge.engine_protocol import Engine, EventStream
from devstack.converge.progress import Event
from devstack.errors import DevstackError
from devstack.usecases import Project, down, last_timeline, restart, up
from devstack.usecases.logs import Follower
from devstack.usecases.overview import changes_rows, container_events, log_follower, views

DEBOUNCE = 0.03  # s: events come in bursts (kill, die, stop); read the rows once per burst
SETTLE = 0.25  # s: after an event-driven read, read once more this much later
QUICK = 0.05  # s: ...and, until the rows show the event's change, this often
REFRESH = 10.0  # s: without events, the rows are read again this often (uptime moves on)
LOG_FLUSH = 0.1  # s: log lines are sent in batches at most this often
LOG_BACKLOG = 2000  # lines a newly opened tab receives
LOG_TAIL = 200  # lines of each service read when the dashboard starts
CLIENT_QUEUE = 500  # messages queued for a slow tab before it is dropped (it reconnects)
RETRY = 2.0  # s: wait before following the engine's events again after an error
NOW_EVERY = 2.0  # s: the "Now" panel's numbers are read from Prometheus this often


def sse(kind: str, data: object) -> bytes:
    """One server-sent event."""
    return f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


@dataclass(eq=False)  # each client is itself (hashed by identity)
class Client:
    """A connected tab: its queue of encoded events (None: the hub ends it)."""

    messages: queue.Queue[bytes | None] = field(
        default_factory=lambda: queue.Queue(maxsize=CLIENT_QUEUE)
    )


class Hub:
    """The shared state, its watchers and the connected clients."""

    def __init__(self, project: Project, engine: Engine):
        self.project, self.engine = project, engine
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.clients: set[Client] = set()
        self.state: dict[str, Any] = {"project": project.stack.project, "services": []}
        self.logs: deque[list[str]] = deque(maxlen=LOG_BACKLOG)
        self.pending: list[list[str]] = []
        self.action: dict[str, Any] | None = None  # the running action, if any
        self.dirty = threading.Event()
        self.refreshes = 0  # rows read so far (tests and the bench count them)
        self.events: EventStream | None = None
        self.follower: Follower | None = None
        self.threads: list[threading.Thread] = []
        self.now: dict[str, Any] | None = None  # the last numbers sent to the "Now" panel

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Read the rows once, then start the watchers."""
        self._refresh()
        for target, name in (
            (self._watch_events, "dashboard-events"),
            (self._refresher, "dashboard-rows"),
            (self._follow_logs, "dashboard-logs"),
            (self._flush_logs, "dashboard-log-batches"),
            (self._watch_now, "dashboard-now"),
        ):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self.threads.append(thread)

    def close(self) -> None:
        """Stop the watchers and end every client's stream."""
        self.stop.set()
        self.dirty.set()
        if self.events is not None:
            self.events.close()
        if self.follower is not None:
            self.follower.stop.set()
        with self.lock:
            clients = list(self.clients)
        for client in clients:
            with contextlib.suppress(queue.Full):
                client.messages.put_nowait(None)

    # --- clients ---------------------------------------------------------------------------
    def connect(self) -> Client:
        """A new client, its queue primed with the current state, timeline and recent logs."""
        client = Client()
        with self.lock:
            client.messages.put_nowait(sse("hello", {}))  # a reconnected page starts afresh
            client.messages.put_nowait(sse("state", self.state))
            client.messages.put_nowait(sse("timeline", self.timeline()))
            if self.logs:
                client.messages.put_nowait(sse("logs", list(self.logs)))
            if self.now is not None:
                client.messages.put_nowait(sse("now", self.now))
            self.clients.add(client)
        return client

    def disconnect(self, client: Client) -> None:
        with self.lock:
            self.clients.discard(client)

    def broadcast(self, kind: str, data: object) -> None:
        """Encode once, queue to every client; a client too slow to keep up is dropped."""
        message = sse(kind, data)
        with self.lock:
            clients = list(self.clients)
        for client in clients:
            try:
                client.messages.put_nowait(message)
            except queue.Full:
                self.disconnect(client)
                with contextlib.suppress(queue.Full):
                    client.messages.get_nowait()
                    client.messages.put_nowait(None)

    def timeline(self) -> dict[str, Any] | None:
        found = last_timeline(self.project)
        return None if found is None else found.as_json()

    # --- the services' rows ----------------------------------------------------------------
    def _watch_events(self) -> None:
        """Follow the engine's events for the project; each one marks the rows dirty."""
        while not self.stop.is_set():
            try:
                self.events = container_events(self.project, self.engine)
                if self.stop.is_set():
                    break
                self.dirty.set()  # whatever happened while we were not listening
                for event in self.events:
                    if changes_rows(event):
                        self.dirty.set()
                    if self.stop.is_set():
                        break
            except DevstackError as exc:
                self.broadcast("notice", {"text": f"engine events: {exc.message}; retrying"})
            self.stop.wait(RETRY)

    def _refresher(self) -> None:
        """Read the rows after each burst of events (again every QUICK until they show a
        change, for up to SETTLE: Docker may send `die` before its container list says
        "exited"), once more SETTLE later, and every REFRESH without events."""
        settle = False
        while not self.stop.is_set():
            woke = self.dirty.wait(SETTLE if settle else REFRESH)
            if self.stop.is_set():
                return
            if woke:
                self.stop.wait(DEBOUNCE)  # the rest of a burst of events
                self.dirty.clear()
                deadline = time.monotonic() + SETTLE
                while not self._refresh() and time.monotonic() < deadline:
                    if self.stop.wait(QUICK) or self.dirty.is_set():
                        break
            else:
                self._refresh()
            settle = woke

    def _refresh(self) -> bool:
        """Read the rows (one status, as `status` does) and send them if they changed."""
        try:
            rows = [v.as_json() for v in views(self.project, self.engine)]
            notice = ""
        except DevstackError as exc:
            rows, notice = self.state["services"], exc.message
        self.refreshes += 1
        state = {
            "project": self.project.stack.project,
            "services": rows,
            "notice": notice,
            "action": self.action,
            "read_at": time.time(),
        }
        with self.lock:
            changed = {**state, "read_at": 0} != {**self.state, "read_at": 0}
            self.state = state
        if changed:
            self.broadcast("state", state)
        return changed

    # --- now: what the services do, from the monitoring group's Prometheus -----------------
    def _watch_now(self) -> None:
        """Every NOW_EVERY while a tab is open: each watched service's numbers, or why there
        are none (the group is off, Prometheus does not answer), as a `now` event."""
        from devstack.usecases.metrics import Monitor, monitor

        found: Monitor | None = None  # found again (a Docker call) only after a failure
        while not self.stop.wait(self._now_every()):
            with self.lock:
                watched = bool(self.clients)
            if not watched and self.now is not None:
                continue  # nobody looks: Prometheus is not asked
            try:
                found = found or monitor(self.project, self.engine)
                rates = found.rates()
                now: dict[str, Any] = {
                    "at": time.time(),
                    "services": [
                        {"service": r.service, "family": r.family, "values": r.values}
                        for r in rates
                    ],
                }
            except DevstackError as exc:
                found = None
                hint = f" ({exc.hint})" if exc.hint else ""
                now = {"at": time.time(), "services": [], "off": exc.message + hint}
            self.now = now
            self.broadcast("now", now)

    def _now_every(self) -> float:
        """At once the first time; then NOW_EVERY, or REFRESH while there is nothing to read
        (the group off: a Docker call each time, to see whether it was turned on)."""
        if self.now is None:
            return 0.0
        return NOW_EVERY if self.now["services"] else REFRESH

    # --- logs ------------------------------------------------------------------------------
    def _follow_logs(self) -> None:
        while not self.stop.is_set():
            try:
                self.follower = log_follower(
                    self.project, self.engine, self, tail=LOG_TAIL, poll=0.5
                )
                if self.stop.is_set():
                    return
                self.follower.run()
                return
            except DevstackError as exc:
                self.broadcast("notice", {"text": f"logs: {exc.message}; retrying"})
                self.stop.wait(RETRY)

    on_broken_pipe: Callable[[], None] = staticmethod(lambda: None)  # a LogSink's, unused

    def line(self, service: str, text: str) -> None:
        """A log line (the follower's sink): batched, kept for new clients."""
        with self.lock:
            self.pending.append([service, text])

    def note(self, service: str, text: str) -> None:
        with self.lock:
            self.pending.append([service, f"-- {text}", "note"])

    def _flush_logs(self) -> None:
        while not self.stop.wait(LOG_FLUSH):
            with self.lock:
                batch, self.pending = self.pending, []
                self.logs.extend(batch)
            if batch:
                self.broadcast("logs", batch)

    # --- actions ---------------------------------------------------------------------------
    def run_action(self, name: str, service: str | None) -> str | None:
        """Start `name` (restart SERVICE, up, down) on its own thread; None when started, else
        why not (another action runs, or the service is unknown)."""
        if name == "restart" and (service is None or service not in self.project.stack.names):
            return f"unknown service {service!r}"
        with self.lock:
            if self.action is not None:
                return f"{self.action['name']} is still running"
            self.action = {"name": name, "service": service, "started": time.time()}
        thread = threading.Thread(
            target=self._act, args=(name, service), name=f"dashboard-{name}", daemon=True
        )
        thread.start()
        return None

    def _act(self, name: str, service: str | None) -> None:
        label = f"{name} {service}" if service else name
        self.broadcast("action", {"name": label, "phase": "started", "text": ""})
        self.dirty.set()

        def report(event: Event) -> None:
            text = f"{event.subject} {event.phase} {event.detail}".rstrip()
            self.broadcast("action", {"name": label, "phase": "progress", "text": text})

        error = ""
        try:
            if name == "restart" and service:
                restart(self.project, self.engine, report, [service])
            elif name == "up":
                up(self.project, self.engine, report)
            elif name == "down":  # never with volumes: that stays a deliberate terminal command
                down(self.project, self.engine, report, volumes=False)
        except DevstackError as exc:
            error = exc.message
        except Exception as exc:  # shown in the page; the dashboard keeps running
            error = repr(exc)
        with self.lock:
            self.action = None
        phase = "failed" if error else "done"
        self.broadcast("action", {"name": label, "phase": phase, "text": error})
        if name == "up":
            self.broadcast("timeline", self.timeline())
        self.dirty.set()
