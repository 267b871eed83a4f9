"""The bench's readiness floor is devstack's own plan and executor (no second implementation
of start order, holds and readiness): on the in-memory engine, no Docker."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bench.common import BenchError
from bench.floor import all_at_once, measure_floor
from devstack.declare.checks import Completed
from devstack.declare.spec import Condition, Dependency, Held, Service, Stack

from .fake_engine import Behaviour, FakeEngine, Scripted

CHECK = Scripted()
HELD = Held(preload=("heavy",), cpu_shares=128)


def stack() -> Stack:
    """Postgres, a held migrations job, and a held API that needs the job completed."""
    postgres = Service("postgres", "img/postgres", readiness=CHECK)
    migrate = Service(
        "migrate",
        "img/app",
        readiness=Completed(),
        depends_on=(Dependency("postgres"),),
        one_shot=True,
        held=HELD,
    )
    api = Service(
        "api",
        "img/app",
        readiness=CHECK,
        depends_on=(
            Dependency("postgres", before_start=False),
            Dependency("migrate", Condition.COMPLETED),
        ),
        held=HELD,
    )
    return Stack("floor", "floor_net", ("floor_data",), (postgres, migrate, api))


def engine() -> FakeEngine:
    fake = FakeEngine(
        {
            "postgres": Behaviour(ready_after=0.3),
            "migrate": Behaviour(exit_after=0.1),
            "api": Behaviour(ready_after=0.05),
        }
    )
    fake.images = {"img/postgres": "sha256:pg", "img/app": "sha256:app"}
    return fake


def test_the_floor_starts_holds_and_releases_as_up_does() -> None:
    fake = engine()
    times = measure_floor(fake, stack())
    # held services start beside Postgres, and are released once what they need is ready
    assert times["migrate_start_call"] < times["postgres"]
    assert times["api_start_call"] < times["postgres"]
    assert times["migrate_release_call"] >= times["postgres"]
    assert times["api_release_call"] >= times["migrate"] >= times["postgres"] + 0.1
    assert times["api"] >= times["api_release_call"] + 0.05
    assert times["floor"] == max(times["postgres"], times["migrate"], times["api"])
    assert times["api_after_start"] == pytest.approx(times["api"] - times["api_start_call"])
    assert fake.happened("released", "api") and fake.happened("cpu_shares", "api=1024")


def test_the_floor_refuses_a_plan_that_would_build_or_reuse_containers() -> None:
    fake = engine()
    del fake.images["img/app"]
    with pytest.raises(BenchError, match="image img/app is missing"):
        measure_floor(fake, stack())
    assert not fake.calls  # refused before anything was made
    fake = engine()
    measure_floor(fake, stack())
    with pytest.raises(BenchError, match="exists"):
        measure_floor(fake, stack(), fresh_volumes=False)


def test_floor_volumes_needs_the_volumes_kept() -> None:
    with pytest.raises(BenchError, match="volume floor_data missing"):
        measure_floor(engine(), stack(), fresh_volumes=False)


def test_floor_parallel_drops_only_readiness_waits_of_long_running_services() -> None:
    parallel = all_at_once(stack())
    assert parallel.service("api").depends_on == (Dependency("migrate", Condition.COMPLETED),)
    assert parallel.service("migrate").depends_on == (Dependency("postgres"),)  # a job keeps it
    times = measure_floor(engine(), replace(stack(), services=parallel.services))
    assert times["api_release_call"] >= times["migrate"]
