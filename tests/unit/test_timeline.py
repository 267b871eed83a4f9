"""`up` records its timeline (devstack.converge.timeline): per service created, started,
released and ready with the check that passed; `up --timeline` prints it (no Docker)."""

from __future__ import annotations

import secrets
from dataclasses import replace
from pathlib import Path

import pytest

from devstack.converge import timeline as timelines
from devstack.converge.timeline import Recorder, Timeline
from devstack.declare.spec import Condition, Dependency, Held
from devstack.errors import ServiceFailed

from .fake_engine import Behaviour, FakeEngine
from .helpers import settings
from .test_executor import SEED, make_stack, service


def _project(tmp_path: Path, stack: object) -> object:
    from devstack.usecases import Project

    tmp_path.mkdir(parents=True, exist_ok=True)
    name = f"tl{secrets.token_hex(3)}"  # its own lock file
    return Project(settings(tmp_path), replace(stack, project=name))  # type: ignore[type-var]


def test_up_records_each_service_marks_in_order_with_the_check_that_passed(
    tmp_path: Path,
) -> None:
    from devstack import usecases

    engine = FakeEngine({"postgres": Behaviour(0.3), "redis": Behaviour(0.1)})
    project = _project(tmp_path, SEED)
    usecases.up(project, engine, lambda event: None)  # type: ignore[arg-type]
    timeline = usecases.last_timeline(project)  # type: ignore[arg-type]
    assert timeline is not None and timeline.ok
    entries = {e.service: e for e in timeline.services}
    assert set(entries) == {"postgres", "redis", "api"}
    for entry in entries.values():
        assert entry.created is not None and entry.started is not None
        assert entry.ready is not None
        assert entry.created <= entry.started <= entry.ready
        assert entry.check == "scripted"
    # postgres said "not yet" a few times while it took 0.3 s; the API started after it
    assert entries["postgres"].attempts >= 1
    assert entries["api"].started is not None and entries["postgres"].ready is not None
    assert entries["api"].started >= entries["postgres"].ready
    assert timeline.total == pytest.approx(entries["api"].ready, abs=0.01)


def test_an_up_to_date_up_keeps_the_timeline_of_the_up_that_started_the_stack(
    tmp_path: Path,
) -> None:
    from devstack import usecases

    engine = FakeEngine({"postgres": Behaviour(0.2)})
    project = _project(tmp_path, SEED)
    usecases.up(project, engine, lambda event: None)  # type: ignore[arg-type]
    first = usecases.last_timeline(project)  # type: ignore[arg-type]
    usecases.up(project, engine, lambda event: None)  # type: ignore[arg-type]
    assert usecases.last_timeline(project) == first  # type: ignore[arg-type]


def test_a_held_service_is_released_and_a_failed_up_is_recorded_too(tmp_path: Path) -> None:
    from devstack import usecases
    from devstack.declare.checks import Completed

    held = Held(preload=("heavy",), cpu_shares=128)
    migrate = replace(
        service("migrate", Dependency("postgres"), one_shot=True), readiness=Completed()
    )
    api = replace(
        service(
            "api",
            Dependency("postgres", before_start=False),
            Dependency("migrate", Condition.COMPLETED),
        ),
        held=held,
    )
    stack = make_stack(service("postgres"), migrate, api)
    engine = FakeEngine({"migrate": Behaviour(exit_after=0.1), "api": Behaviour(0.05)})
    project = _project(tmp_path, stack)
    usecases.up(project, engine, lambda event: None)  # type: ignore[arg-type]
    timeline = usecases.last_timeline(project)  # type: ignore[arg-type]
    assert timeline is not None
    api_entry = next(e for e in timeline.services if e.service == "api")
    assert api_entry.started is not None and api_entry.released is not None
    assert api_entry.started < api_entry.released <= (api_entry.ready or 0)

    failing = FakeEngine({"redis": Behaviour(5, exit_after=0.05, exit_code=1)})
    project = _project(tmp_path / "other", SEED)
    with pytest.raises(ServiceFailed):
        usecases.up(project, failing, lambda event: None)  # type: ignore[arg-type]
    timeline = usecases.last_timeline(project)  # type: ignore[arg-type]
    assert timeline is not None and not timeline.ok
    redis = next(e for e in timeline.services if e.service == "redis")
    assert redis.failed is not None and "exited with code 1" in redis.detail


def test_the_timeline_round_trips_and_prints_one_line_per_service(tmp_path: Path) -> None:
    ticks = iter([0.0, 0.1, 0.2, 0.9, 1.5])
    from devstack.converge.progress import CREATING, HEALTHY, STARTING, WAITING, Event

    seen: list[Event] = []
    recorder = Recorder("demo", seen.append, {"db": "TCP login"}, clock=lambda: next(ticks))
    for phase, detail in [(CREATING, ""), (STARTING, ""), (WAITING, "refused"), (HEALTHY, "")]:
        recorder(Event("db", phase, detail))
    assert len(seen) == 4  # passed on
    timeline = recorder.timeline()
    timelines.save(tmp_path, timeline)
    loaded = timelines.load(tmp_path, "demo")
    assert loaded == timeline
    assert isinstance(loaded, Timeline)
    text = timelines.as_text(loaded)
    assert "created   0.10s" in text[1] and "ready   1.50s" in text[1]
    assert "check passed: TCP login after 1 not-yet" in text[1]
    assert timelines.load(tmp_path, "nothing") is None
