"""The ASGI side of devserver: a fresh uvicorn server per code change in a forked child,
the error page while the code is broken, and the modules the first server imported
(reported to the supervisor, which preloads them for the next)."""

from __future__ import annotations

import contextlib
import importlib
import json
import re
import socket
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import uvicorn


try:  # imported as devstack.programs.* (tests, type checker)
    from .ds_runner import ERROR_HEADER, _write_all, log
except ImportError:  # run as a script: this folder is sys.path[0]
    from ds_runner import ERROR_HEADER, _write_all, log  # type: ignore[no-redef,import-not-found]

try:  # imported as devstack.programs.* (tests, type checker)
    from .ds_errors import CodeError, Project, describe, one_line, render_error_page
except ImportError:  # run as a script: this folder is sys.path[0]
    from ds_errors import CodeError, Project, describe, one_line, render_error_page  # type: ignore[no-redef,import-not-found]

try:  # imported as devstack.programs.* (tests, type checker)
    from .ds_options import Options
except ImportError:  # run as a script: this folder is sys.path[0]
    from ds_options import Options  # type: ignore[no-redef,import-not-found]


Scope = MutableMapping[str, Any]


Message = MutableMapping[str, Any]


Receive = Callable[[], Awaitable[Message]]


Send = Callable[[Message], Awaitable[None]]


ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


ACCEPT_SETTLE_TURNS = 5  # event-loop turns a stopping server gives just-accepted connections


FRESH_CONNECTION_GRACE = 0.2  # seconds a stopping server waits for a new connection's request


# Modules never imported ahead of time: entry points and modules with visible side effects.
NEVER_PRELOAD = frozenset({"__main__", "__mp_main__", "antigravity", "this", "idlelib"})


class Reporter:
    """Lines of JSON from a server process to the supervisor."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def send(self, event: str, **data: Any) -> None:
        """Tell the supervisor about ``event`` (ready, error, modules)."""
        with contextlib.suppress(OSError):
            _write_all(self.fd, (json.dumps({"event": event, **data}) + "\n").encode())


class DevApp:
    """ASGI wrapper: runs the app, or answers every request with the code error's 503 page.

    It drives the app's lifespan itself, so an exception raised while the app starts is
    caught here (uvicorn would exit) and turns into the error page.
    """

    def __init__(
        self,
        app: ASGIApp | None,
        error: CodeError | None,
        project: Project,
        show_traceback: bool,
        on_error: Callable[[CodeError], None],
    ) -> None:
        self.app = app
        self.error = error
        self.project = project
        self.show_traceback = show_traceback
        self.on_error = on_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI entry point."""
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
        elif self.error is not None or self.app is None:
            await self._error_response(scope, send)
        else:
            await self.app(scope, receive, send)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        import asyncio

        if self.app is None or self.error is not None:
            await _trivial_lifespan(receive, send, startup_received=False)
            return
        to_app: asyncio.Queue[Message] = asyncio.Queue()
        started: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        stopped = asyncio.Event()
        asked = False

        async def app_receive() -> Message:
            nonlocal asked
            asked = True
            return await to_app.get()

        async def app_send(message: Message) -> None:
            kind = message["type"]
            if kind == "lifespan.startup.complete" and not started.done():
                started.set_result(None)
            elif kind == "lifespan.startup.failed" and not started.done():
                started.set_result(str(message.get("message", "")) or "startup failed")
            elif kind in {"lifespan.shutdown.complete", "lifespan.shutdown.failed"}:
                stopped.set()

        task = asyncio.ensure_future(self.app(scope, app_receive, app_send))
        await to_app.put(await receive())  # lifespan.startup
        pending: set[asyncio.Future[Any]] = {task, started}
        await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        if not started.done() and task.done():
            # Finished or raised without a word: an app without lifespan support is fine.
            exc = task.exception()
            if exc is None or not asked:
                await _trivial_lifespan(receive, send, startup_received=True)
                return
            self._failed(exc)
        elif started.result() is not None:
            await asyncio.wait({task}, timeout=1.0)
            exc = task.exception() if task.done() else None
            if exc is not None:
                self._failed(exc)
            else:
                self._failed_message(started.result() or "startup failed")
        if self.error is not None:
            await _trivial_lifespan(receive, send, startup_received=True)  # serve the 503 page
            return
        await send({"type": "lifespan.startup.complete"})
        message = await receive()  # lifespan.shutdown
        await to_app.put(message)
        waiter = asyncio.ensure_future(stopped.wait())
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if task.done() and not task.cancelled() and task.exception() is not None:
            log(f"the app's lifespan shutdown failed: {task.exception()!r}")
        await send({"type": "lifespan.shutdown.complete"})

    def _failed(self, exc: BaseException) -> None:
        self.error = describe(exc, self.project)
        sys.stderr.write(f"ERROR:    devserver: the app's startup failed:\n{self.error.details}")
        sys.stderr.flush()
        self.on_error(self.error)

    def _failed_message(self, text: str) -> None:
        lines = [line for line in text.splitlines() if line.strip()]
        summary = one_line(lines[-1] if lines else text)
        self.error = CodeError(summary=summary, kind="LifespanError", details=text)
        log(f"the app's lifespan startup failed: {summary}")
        self.on_error(self.error)

    async def _error_response(self, scope: Scope, send: Send) -> None:
        error = self.error or CodeError("no application", "RuntimeError", "")
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1011})
            return
        if scope["type"] != "http":
            return
        accept = b""
        for name, value in scope.get("headers", []):
            if name.lower() == b"accept":
                accept += value
        wants_html = b"text/html" in accept
        body, content_type = render_error_page(error, self.show_traceback, wants_html)
        header = error.summary if self.show_traceback else error.kind
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    (b"content-type", content_type.encode()),
                    (b"content-length", str(len(body)).encode()),
                    (b"cache-control", b"no-store"),
                    (b"retry-after", b"1"),
                    (ERROR_HEADER.lower().encode(), _header_value(header)),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


async def _trivial_lifespan(receive: Receive, send: Send, *, startup_received: bool) -> None:
    """Answer the lifespan protocol for an app that has none (or cannot start)."""
    if startup_received:
        await send({"type": "lifespan.startup.complete"})
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def _header_value(text: str) -> bytes:
    return re.sub(r"[\x00-\x1f\x7f]", " ", text).encode("ascii", "backslashreplace")


def load_app(spec: str, factory: bool) -> ASGIApp:
    """Import MODULE:ATTRIBUTE (and call it for a factory); exceptions propagate."""
    module_name, _, attribute = spec.partition(":")
    module = importlib.import_module(module_name)
    target: Any = module
    for part in attribute.split("."):
        target = getattr(target, part)
    if factory:
        target = target()
    if not callable(target):
        raise TypeError(f"{spec} is not an ASGI application (not callable)")
    app: ASGIApp = target
    return app


def foreign_modules(project: Project, known: set[str]) -> list[str]:
    """Names of loaded modules that are not the project's nor in ``known`` (import order)."""
    owned_tops: set[str] = set()
    names: list[str] = []
    for name, module in list(sys.modules.items()):
        if name in known:
            continue
        filename = getattr(module, "__file__", None)
        paths = list(getattr(module, "__path__", None) or [])
        if project.owns(filename) or any(project.owns(p) for p in paths):
            owned_tops.add(name.partition(".")[0])
            continue
        names.append(name)
    return [
        n
        for n in names
        if n.partition(".")[0] not in owned_tops and n.partition(".")[0] not in NEVER_PRELOAD
    ]


def _tracking_protocol(base: type[Any]) -> type[Any]:
    """uvicorn's HTTP protocol, marking connections that have not sent a byte yet."""
    if getattr(base, "devserver_tracking", False):
        return base

    def data_received(self: Any, data: bytes) -> None:
        self.devserver_fresh = False
        base.data_received(self, data)

    namespace = {"devserver_tracking": True, "devserver_fresh": True}
    return type(base.__name__, (base,), {**namespace, "data_received": data_received})


def _make_server(config: uvicorn.Config, on_started: Callable[[], None]) -> uvicorn.Server:
    """A uvicorn server that notices a stop signal at once and skips idle grace periods."""
    import asyncio

    import uvicorn

    class DevServer(uvicorn.Server):
        wake: asyncio.Event | None = None
        loop: asyncio.AbstractEventLoop | None = None

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            self.config.http_protocol_class = _tracking_protocol(self.config.http_protocol_class)
            await super().startup(sockets=sockets)
            if self.started and not self.should_exit:
                on_started()

        async def main_loop(self) -> None:
            # uvicorn polls should_exit every 0.1 s; wake up on the signal instead.
            self.loop = asyncio.get_running_loop()
            self.wake = asyncio.Event()
            counter = 0
            should_exit = await self.on_tick(counter)
            while not should_exit:
                counter = (counter + 1) % 864000
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), 0.1)
                should_exit = await self.on_tick(counter)

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            super().handle_exit(sig, frame)
            loop, wake = self.loop, self.wake
            if loop is not None and wake is not None and not loop.is_closed():
                loop.call_soon_threadsafe(wake.set)

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            # Stop accepting first: new connections wait in the kernel's backlog of the shared
            # socket for the next server. Connections accepted just before get a few loop
            # turns to be set up (asyncio resets one whose transport is made after
            # Server.close(), so the reader goes first and close() after), and a short grace
            # to send their request (uvicorn closes one that has not), so they are answered.
            loop = asyncio.get_running_loop()
            grace_until = loop.time() + FRESH_CONNECTION_GRACE
            for server in self.servers:
                for listener in server.sockets:
                    with contextlib.suppress(Exception):  # e.g. an event loop without it
                        loop.remove_reader(listener.fileno())
            for _ in range(ACCEPT_SETTLE_TURNS):
                await asyncio.sleep(0)
            for server in self.servers:
                server.close()
            while loop.time() < grace_until and any(
                getattr(c, "devserver_fresh", False) for c in self.server_state.connections
            ):
                await asyncio.sleep(0.002)
            if self.server_state.connections or self.server_state.tasks:
                await super().shutdown(sockets=sockets)
                return
            # Nothing in flight: skip uvicorn's fixed 0.1 s grace period.
            for sock in sockets or []:
                sock.close()
            if not self.force_exit:
                await self.lifespan.shutdown()

    return DevServer(config)


def server_main(
    options: Options,
    sock: socket.socket,
    report_fd: int,
    forced: CodeError | None,
) -> int:
    """Body of a forked server process: import the app (or its error) and serve it."""
    project = Project(options.app_dir, options.watch)
    reporter = Reporter(report_fd)
    inherited = set(sys.modules)  # what the supervisor had already imported
    if str(options.app_dir) not in sys.path:
        sys.path.insert(0, str(options.app_dir))
    app: ASGIApp | None = None
    error = forced
    if error is None:
        assert options.app is not None
        try:
            app = load_app(options.app, options.factory)
        except KeyboardInterrupt:
            return 130
        except BaseException as exc:  # SystemExit too: a config error at import time
            error = describe(exc, project)
            sys.stderr.write(f"ERROR:    devserver: the app cannot be imported:\n{error.details}")
            sys.stderr.flush()
    if error is not None:
        reporter.send("error", summary=error.summary)

    def on_error(err: CodeError) -> None:
        reporter.send("error", summary=err.summary)

    def on_started() -> None:
        if dev_app.error is None:
            reporter.send("ready")
        if options.auto_preload:
            reporter.send("modules", names=foreign_modules(project, inherited))

    dev_app = DevApp(app, error, project, options.show_traceback, on_error)
    import uvicorn

    config = uvicorn.Config(
        dev_app,
        lifespan="on",
        log_level=options.log_level,
        access_log=options.access_log,
        timeout_graceful_shutdown=max(1, round(options.graceful_timeout)),
    )
    server = _make_server(config, on_started)
    server.run(sockets=[sock])
    return 0 if server.started else 3
