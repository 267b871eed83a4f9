"""Readiness checks: one class per kind, each with its own fields, `check()` and `describe()`.

Checks from the host go through each service's real protocol. A TCP connect is not a check:
docker-proxy accepts on a published port even when nothing listens behind it. The Postgres
check logs in the way the API does (TCP, password), so the unix-socket-only server that initdb
runs on first start is never mistaken for the real one."""

from __future__ import annotations

import socket
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

from devstack.errors import ServiceFailed


@dataclass(frozen=True)
class ContainerState:
    """One inspection of a container's state."""

    status: str  # running | exited | created | ...
    exit_code: int
    health: str  # healthy | unhealthy | starting | ""
    health_output: str  # the last health check's output
    published: tuple[tuple[int, int], ...] = ()  # (container port, host port), TCP


class CheckEngine(Protocol):
    """What a check may ask of the engine (devstack.converge.engine_protocol.Engine has it)."""

    def exec_run(self, container: str, argv: list[str]) -> tuple[int, str]:
        """Run `argv` in the container to completion: exit code and output."""

    def logs(self, container: str, tail: int = 20) -> str:
        """The last `tail` lines of output."""


class NotReady(Exception):
    """Not ready yet; the message says what the check saw."""


@dataclass(frozen=True)
class CheckTarget:
    """What a check may look at: the engine, the container, its state, a time budget."""

    engine: CheckEngine
    container: str
    state: ContainerState
    timeout: float


class ReadinessCheck(ABC):
    """Decides whether a started container is ready. `check` returns when it is, raises
    NotReady while it is not yet, and a ServiceFailed when waiting longer cannot help."""

    waits_for_exit: ClassVar[bool] = False  # True: the container exiting is the goal

    @abstractmethod
    def check(self, target: CheckTarget) -> None:
        """Return when ready; raise NotReady (keep waiting) or ServiceFailed (give up)."""

    @abstractmethod
    def describe(self) -> str:
        """What is checked, for plans and messages."""


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass(frozen=True)
class PostgresLogin(ReadinessCheck):
    """A TCP login with the configured credentials, then `SELECT 1`."""

    host: str
    port: int
    user: str
    password: str = field(repr=False)
    database: str

    def check(self, target: CheckTarget) -> None:
        """Log in and run `SELECT 1`; a refused password fails at once (it cannot heal)."""
        import asyncio

        import asyncpg

        try:
            asyncio.run(self._login(target.timeout))
        except (
            asyncpg.InvalidPasswordError,
            asyncpg.InvalidAuthorizationSpecificationError,
        ) as exc:
            raise ServiceFailed(
                f"postgres refused the configured login: {_describe(exc)}",
                hint="the data volume keeps the password it was created with: set that one in "
                '.env, or change it with `python -m devstack psql -c "ALTER USER ... PASSWORD '
                "'...'\"` (psql logs in inside the container), or start over with "
                "`python -m devstack down --volumes` (deletes the data)",
            ) from None
        except Exception as exc:  # asyncpg's protocol errors have no common base to name
            raise NotReady(_describe(exc)) from exc

    async def _login(self, timeout: float) -> None:
        import asyncpg

        conn = await asyncpg.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            database=self.database,
            timeout=timeout,
            ssl=False,
        )
        try:
            await conn.fetchval("SELECT 1", timeout=timeout)
        finally:
            await conn.close(timeout=timeout)

    def describe(self) -> str:
        """E.g. `postgres login as app + SELECT 1 at 127.0.0.1:5433`."""
        return f"postgres login as {self.user} + SELECT 1 at {self.host}:{self.port}"


@dataclass(frozen=True)
class RedisPing(ReadinessCheck):
    """A RESP `PING` answered by `PONG` (or by NOAUTH: a server that answers is up)."""

    host: str
    port: int

    def check(self, target: CheckTarget) -> None:
        """Send PING, expect PONG."""
        try:
            with socket.create_connection((self.host, self.port), timeout=target.timeout) as sock:
                sock.sendall(b"*1\r\n$4\r\nPING\r\n")
                reply = sock.recv(256)
        except OSError as exc:
            raise NotReady(_describe(exc)) from exc
        if reply.startswith((b"+PONG", b"-NOAUTH")):
            return
        raise NotReady(
            f"redis answered {reply[:60].decode(errors='replace').strip()!r}"
            if reply
            else "connection closed without a reply"
        )

    def describe(self) -> str:
        """E.g. `redis PING at 127.0.0.1:6379`."""
        return f"redis PING at {self.host}:{self.port}"


CODE_ERROR_HEADER = "X-Devstack-Code-Error"


@dataclass(frozen=True)
class HttpGet(ReadinessCheck):
    """An HTTP GET of `path` answered with 200."""

    host: str
    port: int
    path: str = "/"
    container_port: int = 0  # the port inside the container (for checks that run there)

    def __post_init__(self) -> None:
        if not self.path.startswith("/"):
            raise ValueError(f"HTTP readiness path {self.path!r} must start with /")

    def check(self, target: CheckTarget) -> None:
        """GET the path; a dev server's code-error page fails at once with its summary."""
        import http.client  # ~15 ms (email, ssl): only the commands that check pay it

        conn = http.client.HTTPConnection(self.host, self.port, timeout=target.timeout)
        try:
            conn.request("GET", self.path)
            response = conn.getresponse()
            body = response.read(300).decode(errors="replace")
        except (OSError, http.client.HTTPException) as exc:
            raise NotReady(_describe(exc)) from exc
        finally:
            conn.close()
        if response.status == 200:
            return
        code_error = response.getheader(CODE_ERROR_HEADER)
        if code_error:
            raise ServiceFailed(
                code_error,
                hint="fix the code; the dev server reloads on the next save "
                "(the error page answers every request until then)",
            )
        raise NotReady(f"HTTP {response.status}: {body.strip()[:200]}")

    def describe(self) -> str:
        """E.g. `HTTP GET http://127.0.0.1:8000/health`."""
        return f"HTTP GET http://{self.host}:{self.port}{self.path}"


CODE_ERROR_EXIT = 99  # ExecCommand's wrapper: the dev server reports a code error


@dataclass(frozen=True)
class ExecCommand(ReadinessCheck):
    """A command run inside the container exits 0 (for services without a port). With
    `error_file`, a dev server's code-error summary there fails the wait at once."""

    argv: tuple[str, ...]
    error_file: str = ""
    # an exit code that means "failed for good" (its last output line says why): the wait
    # stops at once instead of running out its time (e.g. an exporter that cannot log in)
    failed_exit: int = 0

    def check(self, target: CheckTarget) -> None:
        """Run the command; a non-zero exit means not ready yet (`failed_exit`: failed)."""
        argv = list(self.argv)
        if self.error_file:
            error = self.error_file
            guard = f'if [ -s {error} ]; then cat {error}; exit {CODE_ERROR_EXIT}; fi; exec "$@"'
            argv = ["sh", "-c", guard, "sh", *argv]
        code, output = target.engine.exec_run(target.container, argv)
        if _not_in_image(code, output):
            raise ServiceFailed(
                f"its check runs {self.argv[0]}, which is not in its image: declare a "
                "command the image has"
            )
        if code == CODE_ERROR_EXIT and self.error_file:
            raise ServiceFailed(
                output.strip().splitlines()[0] if output.strip() else "code error",
                hint="fix the code; the dev server restarts it on the next save",
            )
        last = output.strip().splitlines()[-1:] if output.strip() else []
        if self.failed_exit and code == self.failed_exit:
            raise ServiceFailed(last[0] if last else f"exec check exited {code}")
        if code != 0:
            raise NotReady(f"exec check exited {code}" + "".join(f": {x}" for x in last))

    def describe(self) -> str:
        """E.g. `exec test -f /tmp/ready`."""
        return f"exec {' '.join(self.argv)}"


@dataclass(frozen=True)
class Completed(ReadinessCheck):
    """A one-shot container ran to completion with exit code 0."""

    waits_for_exit: ClassVar[bool] = True

    def check(self, target: CheckTarget) -> None:
        """Done when exited 0; a non-zero exit fails with the job's output."""
        state = target.state
        if state.status in {"exited", "dead"}:
            if state.exit_code == 0:
                return
            raise ServiceFailed(f"exited with code {state.exit_code}")
        raise NotReady(f"still {state.status or 'starting'}")

    def describe(self) -> str:
        """`completed (exit 0)`."""
        return "completed (exit 0)"


@dataclass(frozen=True)
class TcpConnect(ReadinessCheck):
    """Something listens on `port` inside the container (its /proc/net/tcp{,6}): a connect
    to the published port is no check, since docker-proxy accepts with nothing behind it."""

    port: int

    def check(self, target: CheckTarget) -> None:
        """Ready when a socket in the container's network namespace listens on the port."""
        code, output = target.engine.exec_run(
            target.container, ["cat", "/proc/net/tcp", "/proc/net/tcp6"]
        )
        if _not_in_image(code, output):
            raise ServiceFailed(
                f"its image has no `cat` to read the container's sockets (a distroless or "
                f"scratch image?): check port {self.port} with r.http(...) or r.log_line(...)"
            )
        if code != 0 and "local_address" not in output:
            raise NotReady(f"cannot read the container's sockets (exit {code})")
        if listening_ports(output) & {self.port}:
            return
        raise NotReady(f"nothing listens on port {self.port} yet")

    def describe(self) -> str:
        """E.g. `TCP listener on port 1025 (in the container)`."""
        return f"TCP listener on port {self.port} (in the container)"


def _not_in_image(code: int, output: str) -> bool:
    """Whether an exec failed because its program is not in the image (runc and crun say
    "executable file ... not found"; exit 126 or 127): waiting cannot help."""
    return code in (126, 127) and "executable file" in output and "not found" in output


def listening_ports(proc_net_tcp: str) -> set[int]:
    """The local ports in LISTEN state (0A) in /proc/net/tcp-formatted text."""
    ports: set[int] = set()
    for line in proc_net_tcp.splitlines():
        fields = line.split()
        if len(fields) > 3 and fields[3] == "0A" and ":" in fields[1]:
            ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


@dataclass(frozen=True)
class LogLine(ReadinessCheck):
    """The container's output has a line matching `pattern` (a regular expression)."""

    pattern: str
    tail: int = 500  # how many of the last lines are searched

    def check(self, target: CheckTarget) -> None:
        """Ready once a matching line was logged."""
        import re

        if re.search(self.pattern, target.engine.logs(target.container, tail=self.tail), re.M):
            return
        raise NotReady(f"no log line matching {self.pattern!r} yet")

    def describe(self) -> str:
        """E.g. `log line /ready to accept/`."""
        return f"log line /{self.pattern}/"
