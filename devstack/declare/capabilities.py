"""The capabilities a service offers the rest of the tool: a `Database`, a `KeyValueStore`, a
`MetricsStore` (Prometheus), `Migrations`. The tool asks the `Stack` for a capability, never for
a service by name; these are pure data, with the URL and duration helpers they need."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Database:
    """A Postgres server's application database, as the host reaches it (the `db` commands
    and the pytest plugin use it). With two, the declaration marks the application's."""

    user: str
    password: str = field(repr=False)
    name: str = ""
    port: int = 5432  # the published host port
    container_port: int = 5432
    application: bool = True
    # the server's command for a throw-away copy whose data may be lost in a crash (per-test
    # clones in memory: devstack.usecases.scratch); empty: the service's own command
    throwaway_command: tuple[str, ...] = ()

    def url(
        self,
        host: str,
        port: int | None = None,
        scheme: str = "postgresql",
        database: str | None = None,
    ) -> str:
        """A DSN for `database` (default: the application's) with every part encoded."""
        host = f"[{host}]" if ":" in host else host
        return (
            f"{scheme}://{url_part(self.user)}:{url_part(self.password)}@{host}:"
            f"{port or self.container_port}/{url_part(database or self.name)}"
        )


@dataclass(frozen=True)
class KeyValueStore:
    """A Redis-protocol server: its published host port and how many numbered databases it
    has (the pytest plugin hands out those no service declares it uses)."""

    port: int
    container_port: int = 6379
    databases: int = 16


@dataclass(frozen=True)
class MetricsStore:
    """A Prometheus server: its published host port (`top` queries its HTTP API there) and
    how often it scrapes (a duration such as "2s")."""

    port: int
    container_port: int = 9090
    scrape_interval: str = "2s"

    def __post_init__(self) -> None:
        if duration_seconds(self.scrape_interval) <= 0:
            raise ValueError(
                f"scrape interval {self.scrape_interval!r} is not a Prometheus duration "
                "such as 2s, 500ms or 1m"
            )

    @property
    def rate_window(self) -> str:
        """A `rate()` window that holds at least four scrapes: 5 x the interval, >= 10 s."""
        return f"{max(10, round(5 * duration_seconds(self.scrape_interval)))}s"


_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?$")


def duration_seconds(text: str) -> float:
    """A Prometheus duration ("1m30s", "500ms") in seconds; 0 when it is not one."""
    match = _DURATION.match(text)
    if not text or match is None:
        return 0.0
    hours, minutes, seconds, millis = (int(g) if g else 0 for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds + millis / 1000


@dataclass(frozen=True)
class Migrations:
    """A migrations job: where its files live (relative to the project), the variable that
    carries the database URL it migrates (`url`: a template with {database}), and the command
    that migrates to head. Its files' digest keys the pytest plugin's templates."""

    directory: str
    database_env: str
    url: str = field(repr=False)
    command: tuple[str, ...] = ()
    files: tuple[str, ...] = ("alembic.ini", "env.py", "versions/*.py")

    def digest(self, project_dir: Path) -> str:
        """A digest of what decides the schema: `files` under `directory` (names and
        contents). The job reruns when it changes; the pytest plugin keys templates by it."""
        root = project_dir / self.directory
        digest = hashlib.sha256()
        for pattern in self.files:
            for path in sorted(root.glob(pattern)):
                if path.is_file():
                    digest.update(path.relative_to(root).as_posix().encode() + b"\0")
                    digest.update(path.read_bytes() + b"\0")
        return digest.hexdigest()


def url_part(value: str) -> str:
    """`value` percent-encoded for a URL's user, password or path: every printable value
    round-trips (`p@ss:w/rd%1` -> `p%40ss%3Aw%2Frd%251`)."""
    from urllib.parse import quote

    return quote(value, safe="")
