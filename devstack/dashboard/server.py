"""The dashboard's HTTP server: the standard library's threading server (no dependency: a
handful of routes and one event stream need no framework).

Security: every request needs the random token (`?token=` or the `X-Devstack-Token` header;
403 without it); the Host header must name this server (no DNS rebinding); actions are POSTs
with the token in the header, a JSON body and an Origin naming this server; no CORS headers
are ever sent, so other sites' pages cannot read anything."""

from __future__ import annotations

import hmac
import json
import queue
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from devstack.dashboard.hub import Hub

KEEPALIVE = 15.0  # s: a comment on an idle event stream (finds closed tabs)
ASSETS = {
    "/app.js": "text/javascript; charset=utf-8",
    "/app.css": "text/css; charset=utf-8",
}
ACTIONS = {"/api/restart": "restart", "/api/up": "up", "/api/down": "down"}
MAX_BODY = 4096


def asset(name: str) -> bytes:
    return resources.files("devstack.dashboard").joinpath("static", name).read_bytes()


class DashboardServer(ThreadingHTTPServer):
    """The server, its hub, its token and the names it answers to."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], hub: Hub, token: str, names: set[str]):
        super().__init__(address, Handler)
        self.hub, self.token = hub, token
        port = self.server_address[1]
        self.hosts = {f"{name}:{port}" for name in names}
        self.origins = {f"http://{host}" for host in self.hosts}


class Handler(BaseHTTPRequestHandler):
    server: DashboardServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the terminal is the user's
        pass

    # --- checks ----------------------------------------------------------------------------
    def _token_ok(self, query: dict[str, list[str]], header_only: bool = False) -> bool:
        given = self.headers.get("X-Devstack-Token", "")
        if not given and not header_only:
            given = (query.get("token") or [""])[0]
        return hmac.compare_digest(given.encode(), self.server.token.encode())

    def _host_ok(self) -> bool:
        return self.headers.get("Host", "") in self.server.hosts

    def _refuse(self, status: HTTPStatus, why: str) -> None:
        self._send(status, why.encode() + b"\n", "text/plain; charset=utf-8")

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")  # the token stays in this page
        self.send_header(
            "Content-Security-Policy",
            "default-src 'self'; connect-src 'self'; img-src 'self' data:; "
            "frame-ancestors 'none'; form-action 'none'",
        )
        self.end_headers()
        self.wfile.write(body)

    def _send_json(self, status: HTTPStatus, data: object) -> None:
        self._send(status, json.dumps(data).encode(), "application/json")

    # --- GET -------------------------------------------------------------------------------
    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if not self._host_ok():
            return self._refuse(HTTPStatus.FORBIDDEN, "unknown Host")
        if not self._token_ok(query):
            return self._refuse(HTTPStatus.FORBIDDEN, "a valid token is required")
        if url.path == "/":
            page = asset("index.html").decode()
            page = page.replace("{{TOKEN}}", self.server.token)
            page = page.replace("{{PROJECT}}", self.server.hub.project.stack.project)
            return self._send(HTTPStatus.OK, page.encode(), "text/html; charset=utf-8")
        if url.path in ASSETS:
            return self._send(HTTPStatus.OK, asset(url.path[1:]), ASSETS[url.path])
        if url.path == "/api/state":
            return self._send_json(HTTPStatus.OK, self.server.hub.state)
        if url.path == "/api/timeline":
            return self._send_json(HTTPStatus.OK, self.server.hub.timeline())
        if url.path == "/events":
            return self._stream()
        return self._refuse(HTTPStatus.NOT_FOUND, "not found")

    def _stream(self) -> None:
        """The shared event stream: this client's queue, written as it fills."""
        hub = self.server.hub
        client = hub.connect()
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        try:
            self.wfile.write(b"retry: 1000\n\n")
            while True:
                try:
                    message = client.messages.get(timeout=KEEPALIVE)
                except queue.Empty:
                    message = b": keepalive\n\n"
                if message is None:
                    return
                self.wfile.write(message)
                self.wfile.flush()
        except OSError:  # the tab was closed
            return
        finally:
            hub.disconnect(client)

    # --- POST ------------------------------------------------------------------------------
    def do_POST(self) -> None:
        url = urlsplit(self.path)
        if not self._host_ok():
            return self._refuse(HTTPStatus.FORBIDDEN, "unknown Host")
        if not self._token_ok({}, header_only=True):
            return self._refuse(HTTPStatus.FORBIDDEN, "a valid X-Devstack-Token is required")
        if self.headers.get("Origin", "") not in self.server.origins:
            return self._refuse(HTTPStatus.FORBIDDEN, "the Origin is not this dashboard")
        if self.headers.get("Content-Type", "").split(";")[0] != "application/json":
            return self._refuse(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "send application/json")
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            return self._refuse(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "too large")
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            return self._refuse(HTTPStatus.BAD_REQUEST, "not JSON")
        action = ACTIONS.get(url.path)
        if action is None or not isinstance(body, dict):
            return self._refuse(HTTPStatus.NOT_FOUND, "not found")
        service = body.get("service")
        refused = self.server.hub.run_action(action, service if isinstance(service, str) else None)
        if refused:
            return self._send_json(HTTPStatus.CONFLICT, {"error": refused})
        return self._send_json(HTTPStatus.ACCEPTED, {"started": action, "service": service})

    def do_OPTIONS(self) -> None:  # no CORS: a preflight learns nothing and is refused
        self._refuse(HTTPStatus.FORBIDDEN, "no cross-origin requests")
