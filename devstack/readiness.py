"""Wait until a started container is ready: probe at once and then with short, growing
intervals (tenacity), and fail fast when the container exits or Docker calls it unhealthy."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_exponential

from devstack.engine import Engine
from devstack.errors import HealthTimeout, ServiceFailed
from devstack.probes import ProbeFailed, run_probe
from devstack.spec import Service

LOG_LINES = 20
SPAWN_GRACE = 1.5  # seconds a supervisor may take to spawn its server process


class Cancelled(Exception):
    """Another part of the command failed or the user interrupted: stop waiting."""


def failure_details(engine: Engine, container: str, health_output: str = "") -> str:
    parts = []
    if health_output:
        parts.append(f"last health check output:\n{health_output}")
    logs = engine.logs(container, tail=LOG_LINES)
    parts.append(f"last {LOG_LINES} log lines:\n{logs}" if logs else "(no log output)")
    return "\n".join(parts)


def wait_ready(
    engine: Engine,
    container: str,
    service: Service,
    deadline: float,
    cancel: threading.Event,
    on_attempt: Callable[[str], None] | None = None,
) -> None:
    """Block until `service`'s probe passes; raise ServiceFailed, HealthTimeout or Cancelled."""
    probe = service.probe
    if probe is None:
        return
    last_error = ["not probed yet"]
    started = time.monotonic()

    def check() -> None:
        if cancel.is_set():
            raise Cancelled
        state = engine.state(container)
        if state.status in {"exited", "dead"}:
            raise ServiceFailed(
                f"{service.name} exited with code {state.exit_code} while starting",
                hint="see its log below; fix the cause and re-run `up`",
                details=failure_details(engine, container),
            )
        if state.health == "unhealthy":
            raise ServiceFailed(
                f"{service.name} is unhealthy (Docker's health check failed)",
                details=failure_details(engine, container, state.health_output),
            )
        try:
            run_probe(probe, timeout=min(1.0, max(0.05, deadline - time.monotonic())))
        except ProbeFailed as exc:
            last_error[0] = str(exc)
            if on_attempt:
                on_attempt(str(exc))
            watch = service.server_process and time.monotonic() - started > SPAWN_GRACE
            if watch and engine.count_processes(container, service.server_process) == 0:
                raise ServiceFailed(
                    f"{service.name}'s server process exited while starting "
                    "(its reloader is still waiting for a code change)",
                    hint="fix the error in the log below; the reloader picks up the fix, "
                    "or re-run `up`",
                    details=failure_details(engine, container),
                ) from exc
            raise

    def out_of_time(retry_state: RetryCallState) -> bool:
        return cancel.is_set() or time.monotonic() >= deadline

    def sleep(seconds: float) -> None:
        cancel.wait(seconds)  # wakes at once when cancelled

    retrying = Retrying(
        retry=retry_if_exception_type(ProbeFailed),
        wait=wait_exponential(multiplier=0.02, min=0.02, max=0.1),
        stop=out_of_time,
        sleep=sleep,
        reraise=True,
    )
    try:
        retrying(check)
    except ProbeFailed:
        if cancel.is_set():
            raise Cancelled from None
        state = engine.state(container)
        raise HealthTimeout(
            f"{service.name} was not ready before the deadline (last probe: {last_error[0]})",
            hint="raise --timeout if it is just slow; otherwise read the output below",
            details=failure_details(engine, container, state.health_output),
        ) from None
