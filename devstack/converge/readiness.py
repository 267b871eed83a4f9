"""Wait until a started container is ready: run its readiness check at once and then with
short, growing intervals (tenacity), and fail fast when the container exits, when Docker calls
a freshly started container unhealthy, or when the check says waiting cannot help."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from tenacity import Retrying, retry_if_exception_type, wait_exponential, wait_fixed

from devstack.converge.engine_protocol import Engine
from devstack.declare.checks import CheckTarget, NotReady
from devstack.declare.spec import Service
from devstack.errors import HealthTimeout, ServiceFailed

LOG_LINES = 20


class Cancelled(Exception):
    """Another part of the command failed or the user interrupted: stop waiting."""


def failure_details(engine: Engine, container: str, health_output: str = "") -> str:
    """Docker's last health output and the container's last log lines, for an error."""
    parts = []
    if health_output:
        parts.append(f"last health check output:\n{health_output}")
    logs = engine.logs(container, tail=LOG_LINES)
    parts.append(f"last {LOG_LINES} log lines:\n{logs}" if logs else "(no log output)")
    return "\n".join(parts)


def _interruptible(cancel: threading.Event) -> Callable[[float], None]:
    """A sleep that wakes at once when `cancel` is set."""

    def sleep(seconds: float) -> None:
        cancel.wait(seconds)

    return sleep


def wait_ready(
    engine: Engine,
    container: str,
    service: Service,
    deadline: float,
    cancel: threading.Event,
    on_attempt: Callable[[str], None] | None = None,
    fresh: bool = True,
    release: str | None = None,
    interval: float | None = None,
) -> None:
    """Block until `service`'s readiness check passes; raise ServiceFailed, HealthTimeout or
    Cancelled. `fresh`: the container was (re)started by this run, so Docker's health status
    is its own; a kept container's old "unhealthy" does not count (its check decides).
    `release`: a held service's release signal, sent again before each attempt while the
    container runs (one lost before its gate listened must not hold it forever).
    `interval`: poll at this fixed pace instead of the short growing one (the bench's floor)."""
    check = service.readiness
    if check is None:
        return
    last_error = ["not checked yet"]

    def fail(message: str, hint: str | None, health_output: str = "") -> ServiceFailed:
        if not message.startswith(service.name):
            message = f"{service.name}: {message}"
        return ServiceFailed(
            message, hint=hint, details=failure_details(engine, container, health_output)
        )

    def attempt() -> None:
        if cancel.is_set():
            raise Cancelled
        state = engine.state(container)
        if release and state.status == "running":
            engine.signal(container, release)
        if state.status in {"exited", "dead"} and not check.waits_for_exit:
            raise fail(
                f"{service.name} exited with code {state.exit_code} while starting",
                "see its log below; fix the cause and re-run `up`",
            )
        if fresh and state.health == "unhealthy" and not check.waits_for_exit:
            raise fail(
                f"{service.name} is unhealthy (Docker's health check failed)",
                None,
                state.health_output,
            )
        target = CheckTarget(
            engine,
            container,
            state,
            # /health answers within its own 1 s dependency timeout; leave it room to say so
            timeout=min(2.0, max(0.05, deadline - time.monotonic())),
        )
        try:
            check.check(target)
        except NotReady as exc:
            last_error[0] = str(exc)
            if on_attempt:
                on_attempt(str(exc))
            raise
        except ServiceFailed as exc:
            if exc.details:
                raise
            raise fail(exc.message, exc.hint) from None

    retrying = Retrying(
        retry=retry_if_exception_type(NotReady),
        wait=wait_fixed(interval)
        if interval
        else wait_exponential(multiplier=0.02, min=0.02, max=0.05),
        stop=lambda _: cancel.is_set() or time.monotonic() >= deadline,
        sleep=_interruptible(cancel),
        reraise=True,
    )
    try:
        retrying(attempt)
    except NotReady:
        if cancel.is_set():
            raise Cancelled from None
        state = engine.state(container)
        raise HealthTimeout(
            f"{service.name} was not ready before the deadline (last check: {last_error[0]})",
            hint="raise --timeout if it is just slow; otherwise read the output below",
            details=failure_details(engine, container, state.health_output),
        ) from None
