"""Progress as events. The executor reports what happens; the UI (ui.py) decides how to show it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

# Phases, in the order a service passes through them during `up`.
BUILDING, PULLING, CREATING, STARTING, WAITING, HEALTHY, FAILED = (
    "building",
    "pulling",
    "creating",
    "starting",
    "waiting",
    "healthy",
    "failed",
)
REMOVING, REMOVED, KEPT = "removing", "removed", "kept"
SKIPPED = "skipped"  # an optional service whose image cannot be had: `up` goes on without it


@dataclass(frozen=True)
class Event:
    subject: str  # a service name, or a network/volume/image name
    phase: str
    detail: str = ""


class Reporter(Protocol):
    def __call__(self, event: Event) -> None: ...
