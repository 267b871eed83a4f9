"""Held start on a real engine (issue 12): in dev mode the migrations job, the API and the
worker start with Postgres, import while it initializes, and run their program only once
released; the migrations still complete before the API serves or the worker consumes."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx

from .conftest import Project, poll

HELD = ("migrate", "api", "worker")


def when(stamp: str) -> datetime:
    """An engine timestamp (RFC 3339 with nanoseconds) as a datetime (microseconds)."""
    day, _, rest = stamp.rstrip("Z").partition("T")
    clock, _, fraction = rest.partition(".")
    return datetime.fromisoformat(f"{day}T{clock}.{(fraction + '000000')[:6]}+00:00")


def log_lines(container: Any) -> list[tuple[datetime, str]]:
    """The container's log, each line with the engine's timestamp."""
    text = container.logs(timestamps=True).decode(errors="replace")
    lines = []
    for line in text.splitlines():
        stamp, _, message = line.partition(" ")
        lines.append((when(stamp), message))
    return lines


def first(lines: list[tuple[datetime, str]], text: str) -> datetime:
    """When the first line containing `text` was written (AssertionError if none)."""
    found = [at for at, message in lines if text in message]
    assert found, f"no line with {text!r} in:\n" + "\n".join(m for _, m in lines)
    return found[0]


def test_a_fresh_up_holds_until_the_migrations_completed(
    make_project: Callable[..., Project],
) -> None:
    project = make_project()
    project.run("up", "--quiet")
    assert httpx.get(f"{project.api_url}/api/v1/ready", timeout=5).status_code == 200
    containers = {name: project.container(name) for name in (*HELD, "postgres")}
    for container in containers.values():
        container.reload()
    migrated = when(containers["migrate"].attrs["State"]["FinishedAt"])
    assert containers["migrate"].attrs["State"]["ExitCode"] == 0
    logs = {name: log_lines(containers[name]) for name in HELD}
    for name in HELD:  # each was held, then released
        first(logs[name], "devstack-gate: held until SIGUSR2")
    postgres_ready = first(log_lines(containers["postgres"]), "ready to accept connections")
    # the job ran against a ready Postgres; the API and the worker started before the job
    # completed (their imports overlapped it) but ran only after it
    assert first(logs["migrate"], "devstack-gate: released") >= postgres_ready
    for name in ("api", "worker"):
        started = when(containers[name].attrs["State"]["StartedAt"])
        assert started < migrated, name
        assert first(logs[name], "devstack-gate: released") >= migrated, name
    assert first(logs["api"], '"GET /api/v1/ready') > migrated
    assert first(logs["worker"], " ready.") > migrated


def test_a_restarted_api_serves_again_without_devstack(
    make_project: Callable[..., Project],
) -> None:
    project = make_project()
    project.run("up", "--quiet", "api")
    api = project.container("api")
    api.restart(timeout=10)  # `docker restart`: no devstack to release it again

    def ready() -> bool:
        try:
            return httpx.get(f"{project.api_url}/api/v1/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    poll(ready, timeout=60, interval=0.1)
    assert "released before" in api.logs().decode(errors="replace")
