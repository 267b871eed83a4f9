"""What a live view of the stack needs (the dashboard): each service's row with its last
health check message and the command that opens a shell in it, the project's container events
as they happen, and its logs followed across restarts. Nothing here prints or serves."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from devstack.converge.engine_protocol import ContainerEvent, Engine, EventStream
from devstack.errors import DevstackError
from devstack.usecases import Project, StatusReport, status
from devstack.usecases.logs import Follower, LogSink, colour_of

BAD_HEALTH = frozenset({"unhealthy", "code error"})


@dataclass(frozen=True)
class ServiceView:
    """One service as the dashboard shows it."""

    service: str
    container: str
    state: str
    health: str
    health_message: str  # Docker's last health check output ("" without a check)
    ports: tuple[str, ...]
    image: str
    uptime: str
    drift: str
    code_error: str
    colour: str  # as in `logs`
    shell: str  # the command line that opens a shell (or the service's client) in it
    declared: bool  # False: an orphan container of the project
    ok: bool  # running, and not unhealthy or broken

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def views(project: Project, engine: Engine) -> list[ServiceView]:
    """Every service's view, from one status report (the same as `status`)."""
    from devstack.usecases.threads import each_at_once

    report: StatusReport = status(project, engine)
    stack = project.whole

    def message(name: str) -> tuple[str, str]:
        container = report.observed.containers[name]
        try:
            output = engine.state(container.id).health_output
        except DevstackError:  # removed meanwhile: the next refresh shows it gone
            output = ""
        return name, output.strip().splitlines()[-1][:300] if output.strip() else ""

    checked = [n for n, c in report.observed.containers.items() if c.health]
    messages = dict(each_at_once(message, checked))
    result = []
    for row in report.rows:
        declared = row.service in stack.names
        ok = row.state == "running" and row.health.split(";")[0] not in BAD_HEALTH
        result.append(
            ServiceView(
                service=row.service,
                container=row.container,
                state=row.state,
                health=row.health,
                health_message=messages.get(row.service, ""),
                ports=row.ports,
                image=row.image,
                uptime=row.uptime,
                drift=row.drift,
                code_error=row.code_error,
                colour=colour_of(stack, row.service),
                shell=shell_command(project, row.service) if declared else "",
                declared=declared,
                ok=ok,
            )
        )
    return result


def shell_command(project: Project, service: str) -> str:
    """The command a developer runs to get a shell in `service`: its own client when it
    declares one (`psql`, `redis-cli`), else `exec SERVICE -- sh`."""
    settings = project.settings
    words = ["python", "-m", "devstack"]
    if settings.project_dir.resolve() != Path.cwd().resolve():
        words += ["--project-dir", str(settings.project_dir)]
    if settings.env_file != settings.project_dir / ".env":
        words += ["--env-file", str(settings.env_file)]
    found = project.whole.service(service)
    own = [s for s in found.shortcuts if not s.one_off and not s.unavailable]
    words += [own[0].name] if own else ["exec", service, "--", "sh"]
    return shlex.join(words)


# Events that change nothing a row shows: Docker's health checks run as execs every interval,
# and reading a file or a log attaches; only their outcome (health_status: ...) matters.
QUIET = ("exec_", "archive-path", "extract-to-dir", "attach", "resize", "top", "export")


def container_events(project: Project, engine: Engine) -> EventStream:
    """The project's container events from now on (start, die, health_status: ...)."""
    return engine.events(project.stack.project)


def changes_rows(event: ContainerEvent) -> bool:
    """Whether the event may change a service's row (not a health check's exec)."""
    return not event.action.startswith(QUIET)


def log_follower(
    project: Project, engine: Engine, sink: LogSink, tail: int, poll: float
) -> Follower:
    """A follower of the logs of every service turned on (and of any other that has a
    container) (the last `tail` lines of each first);
    `run()` it on a thread and set its `stop` to end it."""
    stack = project.whole
    observed = engine.snapshot(stack.project)
    names: Sequence[str] = [
        n for n in stack.names if n in project.stack.names or n in observed.containers
    ]
    present = [n for n in names if n in observed.containers]
    return Follower(engine, stack, sink, list(names), present, tail, None, poll=poll)
