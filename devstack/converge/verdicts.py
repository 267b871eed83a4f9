"""What `up` saw: the containers whose readiness check passed, each with the mark of that start
(ObservedContainer.start_mark: its network endpoints' ids, new at every start, read from the
container listing). On engines without a healthcheck `start_interval` (API < 1.44) Docker's
first check comes a whole interval after the start; until then `status` and a no-op `up` take
such a container as ready from this record instead of checking it again (an exec or a login
per service) or inspecting it. A restarted or recreated container no longer matches its entry.
Kept beside the build cache."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from devstack.converge.cachedir import CACHE_DIR
from devstack.converge.observed import ObservedContainer


def _path(project_dir: Path, project: str) -> Path:
    return project_dir / CACHE_DIR / f"ready-{project}.json"


def record(
    project_dir: Path, project: str, marks: Mapping[str, str], existing: Iterable[str] = ()
) -> None:
    """Remember these containers (id -> start mark) as found ready, beside what was
    recorded for the `existing` others (`restart api` keeps the rest); best effort (a
    read-only checkout only costs `status` a check)."""
    path = _path(project_dir, project)
    try:
        path.parent.mkdir(exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        kept = {k: v for k, v in recorded(project_dir, project).items() if k in set(existing)}
        merged = {**kept, **marks}
        temporary.write_text(json.dumps(merged, sort_keys=True))
        temporary.replace(path)
    except OSError:
        pass


def recorded(project_dir: Path, project: str) -> dict[str, str]:
    """The containers `up` last found ready (id -> start mark); {} when there is no record."""
    try:
        data = json.loads(_path(project_dir, project).read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def vouches(checked: Mapping[str, str], container: ObservedContainer) -> bool:
    """Whether the record (`recorded`) holds this very start of `container`."""
    return bool(container.start_mark) and checked.get(container.id) == container.start_mark
