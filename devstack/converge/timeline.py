"""How the last `up` went, per service: when it was created, started, released and found
ready, and which check passed. A `Recorder` wraps the run's reporter and timestamps the
executor's events (devstack.converge.progress); `up` keeps the result beside the build cache
(`.devstack-cache/timeline-PROJECT.json`); `up --timeline` prints it and the dashboard draws it."""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from devstack.converge.buildinputs import CACHE_DIR
from devstack.converge.progress import (
    BUILDING,
    CREATING,
    FAILED,
    HEALTHY,
    PULLING,
    STARTING,
    WAITING,
    Event,
    Reporter,
)

# The marks of one service, in the order it passes them (seconds from the start of `up`).
MARKS = ("building", "pulling", "created", "started", "released", "checking", "ready", "failed")


@dataclass(frozen=True)
class ServiceTimeline:
    """One service's marks (seconds from the start of `up`; None: it did not pass it)."""

    service: str
    building: float | None = None
    pulling: float | None = None
    created: float | None = None
    started: float | None = None
    released: float | None = None
    checking: float | None = None
    ready: float | None = None
    failed: float | None = None
    check: str = ""  # the readiness check that passed (its description)
    attempts: int = 0  # checks that said "not yet" before it passed
    detail: str = ""  # the failure, when it failed

    @property
    def begin(self) -> float | None:
        """Its first mark."""
        marks = [m for m in self.marks() if m[1] is not None]
        return marks[0][1] if marks else None

    @property
    def end(self) -> float | None:
        """When it was ready (or failed)."""
        return self.ready if self.ready is not None else self.failed

    def marks(self) -> list[tuple[str, float | None]]:
        return [(name, getattr(self, name)) for name in MARKS]


@dataclass(frozen=True)
class Timeline:
    """The services of one `up`, in the order they first did something."""

    project: str
    started_at: str  # ISO 8601, UTC
    services: tuple[ServiceTimeline, ...] = ()
    total: float = 0.0
    ok: bool = True

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Timeline:
        services = tuple(ServiceTimeline(**s) for s in data.get("services", ()))
        return cls(
            project=str(data["project"]),
            started_at=str(data["started_at"]),
            services=services,
            total=float(data.get("total", 0.0)),
            ok=bool(data.get("ok", True)),
        )


@dataclass
class Recorder:
    """A reporter that timestamps each service's first event of every phase, then passes the
    event on to `report`. `checks`: each service's readiness check description."""

    project: str
    report: Reporter
    checks: dict[str, str] = field(default_factory=dict)
    clock: Any = time.monotonic
    start: float = 0.0
    started_at: str = ""
    _marks: dict[str, ServiceTimeline] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.start = self.clock()
        self.started_at = datetime.now(UTC).isoformat(timespec="milliseconds")

    def __call__(self, event: Event) -> None:
        self._note(event)
        self.report(event)

    def _note(self, event: Event) -> None:
        mark = _mark_of(event)
        if mark is None:
            return
        at = round(self.clock() - self.start, 3)
        with self._lock:
            entry = self._marks.get(event.subject) or ServiceTimeline(event.subject)
            changes: dict[str, Any] = {}
            if getattr(entry, mark) is None:
                changes[mark] = at
            if mark == "checking" and event.detail != "checking":
                changes["attempts"] = entry.attempts + 1
            if mark == "ready":
                changes["check"] = self.checks.get(event.subject, "")
            if mark == "failed":
                changes["detail"] = event.detail.splitlines()[0][:300] if event.detail else ""
            self._marks[event.subject] = replace(entry, **changes)

    def timeline(self, services: tuple[str, ...] | list[str] = ()) -> Timeline:
        """What was recorded, for the services named (all recorded when empty)."""
        with self._lock:
            marks = dict(self._marks)
        names = [n for n in marks if not services or n in services]
        entries = tuple(marks[n] for n in names if marks[n].begin is not None)
        total = max((e.end or e.begin or 0.0 for e in entries), default=0.0)
        ok = not any(e.failed is not None for e in entries)
        return Timeline(self.project, self.started_at, entries, round(total, 3), ok)


def _mark_of(event: Event) -> str | None:
    """The mark an executor event stands for (devstack.converge.executor's reports)."""
    if event.phase == STARTING:
        return "released" if event.detail.startswith("released") else "started"
    return {
        BUILDING: "building",
        PULLING: "pulling",
        CREATING: "created",
        WAITING: "checking",
        HEALTHY: "ready",
        FAILED: "failed",
    }.get(event.phase)


def _path(project_dir: Path, project: str) -> Path:
    return project_dir / CACHE_DIR / f"timeline-{project}.json"


def save(project_dir: Path, timeline: Timeline) -> None:
    """Keep `timeline` as the project's last; best effort (a read-only checkout loses it)."""
    path = _path(project_dir, timeline.project)
    try:
        path.parent.mkdir(exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps(timeline.as_json(), indent=1))
        temporary.replace(path)
    except OSError:
        pass


def load(project_dir: Path, project: str) -> Timeline | None:
    """The project's last recorded `up`, or None."""
    try:
        return Timeline.from_json(json.loads(_path(project_dir, project).read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def as_text(timeline: Timeline) -> list[str]:
    """`up --timeline`: one line per service, its marks in seconds, and the check that passed."""
    lines = [
        f"timeline of the last `up` of {timeline.project} (started {timeline.started_at}, "
        f"{'ready' if timeline.ok else 'failed'} after {timeline.total:.2f}s)"
    ]
    width = max((len(e.service) for e in timeline.services), default=7)
    for entry in timeline.services:
        marks = "  ".join(f"{name} {at:6.2f}s" for name, at in entry.marks() if at is not None)
        line = f"  {entry.service:<{width}}  {marks}"
        if entry.check:
            tries = f" after {entry.attempts} not-yet" if entry.attempts else ""
            line += f"  · check passed: {entry.check}{tries}"
        if entry.detail:
            line += f"  · {entry.detail}"
        lines.append(line)
    return lines
