"""`python -m devstack dashboard`: the stack in the browser, served by devstack itself.

A front end beside the CLI, on the use cases (it never talks to Docker itself: import-linter
checks it). hub.py keeps the one shared view and its watchers, server.py answers HTTP, and
static/ holds the page (plain JavaScript and CSS, no build step, nothing from a CDN)."""

from __future__ import annotations

import ipaddress
import secrets
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass

from devstack.converge.engine_protocol import Engine
from devstack.errors import ConfigError
from devstack.usecases import Project

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class Options:
    host: str = LOOPBACK
    port: int = 0  # 0: a free port
    open_browser: bool = True
    allow_remote: bool = False  # binding beyond loopback must be asked for


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(project: Project, options: Options) -> None:
    """A non-local bind needs `--allow-remote`, and never with an example secret in use."""
    if is_loopback(options.host):
        return
    if not options.allow_remote:
        raise ConfigError(
            f"--host {options.host} would serve the dashboard (and its actions) beyond this "
            "machine",
            hint="add --allow-remote if that is what you want; anyone with the printed URL "
            "can restart and stop your stack",
        )
    example = project.stack.example_secrets
    if example:
        raise ConfigError(
            f"--host {options.host}: refused while the example {example[0]} is in use",
            hint=project.settings.hint_for(example[0]),
        )


def serve(project: Project, engine: Engine, options: Options, say: Callable[[str], None]) -> int:
    """Serve until interrupted (KeyboardInterrupt propagates after a clean stop)."""
    from devstack.dashboard.hub import Hub
    from devstack.dashboard.server import DashboardServer

    check_bind(project, options)
    token = secrets.token_urlsafe(24)
    hub = Hub(project, engine)
    names = {options.host, LOOPBACK, "localhost"} if is_loopback(options.host) else {options.host}
    try:
        server = DashboardServer((options.host, options.port), hub, token, names)
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on {options.host}:{options.port}: {exc.strerror}",
            hint="choose another --port, or leave it out for a free one",
        ) from None
    host = f"[{options.host}]" if ":" in options.host else options.host
    url = f"http://{host}:{server.server_address[1]}/?token={token}"
    try:
        hub.start()
        say(f"dashboard of {project.stack.project}: {url}")
        say("Ctrl-C stops it")
        if options.open_browser:
            webbrowser.open(url)
        server.serve_forever(poll_interval=0.5)
    finally:
        hub.close()
        server.server_close()
    return 0
