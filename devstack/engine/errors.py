"""Docker's errors translated into devstack's (devstack.errors): the engine's refusals and
every transport failure of docker-py, requests, urllib3, http.client and sockets, mapped in
one place. Nothing here is imported unless something failed."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from devstack.errors import DevstackError, DockerApiError, DockerUnavailable


class SocketBroken(ConnectionError):
    """The engine's socket could not be reached or broke mid-call (the cause is chained)."""


DAEMON_HINT = (
    "start the Docker engine (`sudo systemctl start docker`, or `bash scripts/bootstrap.sh`) "
    "and check `docker info`"
)
BROKEN_HINT = (
    "check that the engine still runs (`docker info`), then run the command again: "
    "`up` converges from wherever it stopped"
)


@contextmanager
def docker_errors(action: str) -> Iterator[None]:
    """Map what the engine's clients raise while doing `action` to devstack errors: the
    engine's refusals (APIError) and every transport failure of docker-py, requests, urllib3,
    http.client and sockets (unreachable, broken mid-request or mid-stream, timed out).
    Nothing is imported unless something failed."""
    try:
        yield
    except DevstackError:
        raise
    except Exception as exc:
        mapped = _mapped(exc, action)
        if mapped is None:
            raise
        raise mapped from exc


def _mapped(exc: Exception, action: str) -> DevstackError | None:
    """The devstack error for what a client raised; None for anything else."""
    import http.client

    import docker.errors
    import requests.exceptions
    import urllib3.exceptions
    from docker.utils.socket import SocketError

    if isinstance(exc, docker.errors.APIError):
        explanation = exc.explanation or str(exc)
        if isinstance(explanation, bytes):
            explanation = explanation.decode(errors="replace")
        return DockerApiError(f"Docker refused to {action}: {explanation}", status=exc.status_code)
    transport = (
        requests.exceptions.RequestException,
        urllib3.exceptions.HTTPError,
        http.client.HTTPException,
        SocketError,
        SocketBroken,
        ConnectionResetError,
        ConnectionAbortedError,
        ConnectionRefusedError,
        TimeoutError,
    )
    if isinstance(exc, transport):
        return transport_error(exc, action)
    if isinstance(exc, docker.errors.DockerException):  # e.g. a TLS or ssh:// setup it cannot use
        where, hint = _engine()
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return DockerUnavailable(
            f"cannot use the Docker engine{where} to {action}: {reason}", hint=hint
        )
    return None


def transport_error(exc: BaseException, action: str) -> DockerUnavailable:
    """The one line for a transport failure: never reached, timed out, or broken midway."""
    import requests.exceptions
    import urllib3.exceptions

    where, hint = _engine()
    causes = _chain(exc)
    timeouts = (requests.exceptions.Timeout, urllib3.exceptions.TimeoutError, TimeoutError)
    never_connected = (
        urllib3.exceptions.NewConnectionError,
        ConnectionRefusedError,
        FileNotFoundError,
    )
    if any(isinstance(c, PermissionError) for c in causes):
        return DockerUnavailable(
            f"permission denied on the Docker engine's socket{where} while trying to {action}",
            hint="add your user to the docker group (`sudo usermod -aG docker $USER`, then log "
            "in again), or use rootless Docker",
        )
    if any(isinstance(c, never_connected) for c in causes):
        return DockerUnavailable(
            f"cannot reach the Docker engine{where} while trying to {action}", hint=hint
        )
    if any(isinstance(c, timeouts) for c in causes):
        return DockerUnavailable(
            f"the Docker engine{where} did not answer in time while trying to {action}",
            hint=BROKEN_HINT,
        )
    return DockerUnavailable(
        f"the connection to the Docker engine{where} broke while trying to {action}",
        hint=BROKEN_HINT,
    )


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc` and what it wraps: its cause, and what requests and urllib3 nest in `args` and
    `reason` (not `__context__`: an unrelated error handled earlier must not classify it)."""
    seen: list[BaseException] = []
    pending: list[BaseException] = [exc]
    while pending and len(seen) < 20:
        current = pending.pop()
        if any(current is s for s in seen):
            continue
        seen.append(current)
        pending += [a for a in current.args if isinstance(a, BaseException)]
        if current.__cause__ is not None:
            pending.append(current.__cause__)
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            pending.append(reason)
    return seen


def _engine() -> tuple[str, str]:
    """` at HOST (where it was chosen)` for an engine that is not the default, and the hint."""
    from devstack.engine.endpoint import resolve_endpoint

    try:
        endpoint = resolve_endpoint()
    except DevstackError:
        return "", DAEMON_HINT
    if endpoint.is_default:
        return "", DAEMON_HINT
    if endpoint.source == "context":
        return (
            f" at {endpoint.host} (Docker context {endpoint.context})",
            f"start the engine of context {endpoint.context} and check `docker info`; "
            "or pick another: `docker context use NAME`",
        )
    return f" at {endpoint.host} (DOCKER_HOST)", f"{DAEMON_HINT}; or unset DOCKER_HOST"
