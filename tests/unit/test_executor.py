"""The executor, readiness and use cases on the in-memory engine: parallel start, dependency
conditions, fail fast, cancel, a container that exits while waited for (no Docker)."""

from __future__ import annotations

import itertools
import statistics
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from devstack.converge.executor import CONTENDING_AT_ONCE, Executor
from devstack.converge.plan import plan_restart, plan_up
from devstack.converge.readiness import Cancelled
from devstack.declare.checks import CheckTarget
from devstack.declare.spec import Condition, Dependency, Held, Service, Stack
from devstack.errors import ServiceFailed

from .fake_engine import Behaviour, FakeEngine, Scripted

CHECK = Scripted()


def make_stack(*services: Service) -> Stack:
    return Stack("demo", "demo_net", (), services)


def service(name: str, *deps: Dependency, one_shot: bool = False) -> Service:
    return Service(name, f"img/{name}", readiness=CHECK, depends_on=deps, one_shot=one_shot)


SEED = make_stack(
    service("postgres"),
    service("redis"),
    service("api", Dependency("postgres"), Dependency("redis")),
)


def run_up(engine: FakeEngine, stack: Stack, timeout: float = 5.0) -> dict[str, float]:
    events: list[object] = []
    observed = engine.snapshot(stack.project, [s.image for s in stack.services])
    plan = plan_up(stack, observed)
    existing = {n: c.id for n, c in observed.containers.items()}
    result = Executor(engine, stack, events.append).run(plan, timeout, existing)
    return result.ready_after


def test_independent_services_start_in_parallel_and_dependents_wait() -> None:
    engine = FakeEngine({"postgres": Behaviour(0.3), "redis": Behaviour(0.1)})
    ready = run_up(engine, SEED)
    assert set(ready) == {"postgres", "redis", "api"}
    # both dependencies were started before either was ready
    assert engine.when("start", "redis") - engine.when("start", "postgres") < 0.1
    # the API was created early but started only once both were ready
    assert engine.when("create", "api") < engine.when("start", "postgres") + 0.2
    assert engine.when("start", "api") >= engine.when("start", "postgres") + 0.3
    assert ready["api"] >= ready["postgres"] >= ready["redis"]


def test_a_service_that_tolerates_it_starts_with_its_dependencies() -> None:
    api = service(
        "api",
        Dependency("postgres", before_start=False),
        Dependency("redis", before_start=False),
    )
    stack = make_stack(service("postgres"), service("redis"), api)
    engine = FakeEngine({"postgres": Behaviour(0.4)})
    ready = run_up(engine, stack)
    assert engine.when("start", "api") < engine.when("start", "postgres") + 0.2
    assert ready["api"] >= ready["postgres"]  # ready only once its dependencies are


def test_completed_condition_runs_the_job_first() -> None:
    from devstack.declare.checks import Completed

    migrate = replace(
        service("migrate", Dependency("postgres"), one_shot=True), readiness=Completed()
    )
    api = service("api", Dependency("migrate", Condition.COMPLETED))
    stack = make_stack(service("postgres"), migrate, api)
    engine = FakeEngine({"migrate": Behaviour(exit_after=0.2, exit_code=0)})
    run_up(engine, stack)
    assert engine.when("start", "migrate") >= engine.when("start", "postgres")
    assert engine.when("start", "api") >= engine.when("start", "migrate") + 0.2


def test_a_failed_job_stops_up_and_its_dependents_never_start() -> None:
    from devstack.declare.checks import Completed

    migrate = replace(service("migrate", one_shot=True), readiness=Completed())
    stack = make_stack(migrate, service("api", Dependency("migrate", Condition.COMPLETED)))
    engine = FakeEngine({"migrate": Behaviour(exit_after=0.05, exit_code=3)})
    with pytest.raises(ServiceFailed, match="migrate: exited with code 3"):
        run_up(engine, stack)
    assert not engine.happened("start", "api")


def test_first_failure_fails_fast_and_cancels_the_other_waits() -> None:
    engine = FakeEngine(
        {
            "postgres": Behaviour(ready_after=30),
            "redis": Behaviour(ready_after=5, exit_after=0.1, exit_code=1),
        }
    )
    started = time.monotonic()
    with pytest.raises(ServiceFailed, match="redis exited with code 1 while starting") as info:
        run_up(engine, SEED, timeout=60)
    assert time.monotonic() - started < 2
    assert info.value.details and "log of demo-redis" in info.value.details
    assert not engine.happened("start", "api")


def test_cancel_stops_the_run_promptly() -> None:
    engine = FakeEngine({"postgres": Behaviour(ready_after=30)})
    cancel = threading.Event()
    threading.Timer(0.2, cancel.set).start()
    observed = engine.snapshot("demo", [])
    started = time.monotonic()
    with pytest.raises(Cancelled):
        Executor(engine, SEED, lambda e: None, cancel).run(plan_up(SEED, observed), 60, {})
    assert time.monotonic() - started < 2


def test_a_kept_container_with_a_stale_unhealthy_status_is_judged_by_its_check() -> None:
    engine = FakeEngine()
    run_up(engine, SEED)
    for container in engine.containers.values():
        container.health = "unhealthy"  # e.g. while its dependency was down, earlier
    again = run_up(engine, SEED)  # nothing to change; Docker still says unhealthy
    assert "api" in again


def test_a_fresh_unhealthy_container_fails_fast() -> None:
    engine = FakeEngine({"redis": Behaviour(ready_after=30, health="unhealthy")})
    with pytest.raises(ServiceFailed, match="redis is unhealthy"):
        run_up(engine, SEED, timeout=60)


def test_deadline_gives_a_health_timeout_with_the_last_check() -> None:
    from devstack.errors import HealthTimeout

    engine = FakeEngine({"redis": Behaviour(ready_after=30)})
    with pytest.raises(
        HealthTimeout, match=r"redis was not ready before the deadline \(last check: not yet\)"
    ):
        run_up(engine, SEED, timeout=0.3)


def test_second_up_changes_nothing_and_restart_goes_through_a_plan() -> None:
    engine = FakeEngine()
    run_up(engine, SEED)
    calls = len(engine.calls)
    run_up(engine, SEED)
    assert len(engine.calls) == calls  # no create, no start
    observed = engine.snapshot("demo", [])
    plan = plan_restart(SEED, observed, ["redis", "api"])
    existing = {n: c.id for n, c in observed.containers.items()}
    Executor(engine, SEED, lambda e: None).run(plan, 5, existing)
    assert engine.when("restart", "api") >= engine.when("restart", "redis")
    assert not engine.happened("restart", "postgres")


def test_shared_build_is_built_once(tmp_path: object) -> None:
    from pathlib import Path

    from devstack.declare.spec import Build

    build = Build(Path("/nonexistent"))
    api = replace(service("api"), build=build, image="devstack/api:h1")
    worker = replace(service("worker"), build=build, image="devstack/api:h1")
    stack = make_stack(api, worker)
    observed = FakeEngine().snapshot("demo", [])
    plan = plan_up(stack, observed)
    assert [str(op) for op in plan.of_kind("image")] == [
        "build     image      devstack/api:h1              (inputs changed)"
    ]


def test_status_checks_a_container_whose_first_docker_check_is_pending() -> None:
    from devstack.converge.status import status_rows
    from devstack.usecases import probe_starting

    engine = FakeEngine({"redis": Behaviour(ready_after=30)})
    run_up(engine, replace(SEED, services=SEED.services[:1]))  # postgres only, ready
    engine.behaviours["redis"] = Behaviour(ready_after=30)
    for container in engine.containers.values():
        container.health = "health: starting"
    observed = engine.snapshot("demo", [])
    probed = probe_starting(SEED, observed, engine)
    assert probed == {"postgres"}
    row = status_rows(SEED, observed, probed)[0]
    assert row.health == "ready (probed)"


def test_status_trusts_what_up_found_ready_until_the_container_restarts(tmp_path: Path) -> None:
    from devstack.converge import verdicts
    from devstack.usecases import probe_starting

    stack = replace(SEED, services=SEED.services[:1])
    engine = FakeEngine()
    run_up(engine, stack)
    (container,) = engine.containers.values()
    container.health = "health: starting"  # Docker has not checked yet
    observed = engine.snapshot("demo", [])
    verdicts.record(tmp_path, "demo", {container.id: observed.containers["postgres"].start_mark})
    engine.behaviours["postgres"] = container.behaviour = Behaviour(ready_after=30)  # a probe fails
    checked = verdicts.recorded(tmp_path, "demo")
    inspected: list[str] = []
    engine.state = lambda c: inspected.append(c) or FakeEngine.state(engine, c)  # type: ignore[method-assign]
    assert probe_starting(stack, observed, engine, checked) == {"postgres"}
    assert inspected == []  # the listing vouches for the start: no inspect
    engine.restart(container.id)  # another start of the same container: the record is stale
    observed = engine.snapshot("demo", [])
    assert probe_starting(stack, observed, engine, checked) == frozenset()
    assert verdicts.recorded(tmp_path, "other") == {}


def held_stack() -> Stack:
    from devstack.declare.checks import Completed

    held = Held(preload=("heavy",), cpu_shares=128)
    migrate = replace(
        service("migrate", Dependency("postgres"), one_shot=True),
        readiness=Completed(),
        held=held,
    )
    api = replace(
        service(
            "api",
            Dependency("postgres", before_start=False),
            Dependency("migrate", Condition.COMPLETED),
        ),
        held=held,
    )
    worker = replace(service("worker", Dependency("migrate", Condition.COMPLETED)), held=held)
    return make_stack(service("postgres"), migrate, api, worker)


def test_held_services_start_with_the_first_wave_and_run_only_once_released() -> None:
    engine = FakeEngine(
        {
            "postgres": Behaviour(ready_after=0.3),
            "migrate": Behaviour(exit_after=0.2),
            "api": Behaviour(ready_after=0.05),
        }
    )
    ready = run_up(engine, held_stack())
    postgres = engine.when("start", "postgres")
    for name in ("migrate", "api", "worker"):  # imports overlap Postgres' start
        assert engine.when("start", name) < postgres + 0.15, name
    # the job runs only once Postgres is ready, the API and worker once the job completed
    assert engine.when("released", "migrate") >= postgres + 0.3
    job_done = engine.when("released", "migrate") + 0.2
    assert engine.when("released", "api") >= job_done
    assert engine.when("released", "worker") >= job_done
    assert ready["api"] >= ready["migrate"] >= ready["postgres"]
    # held at a low CPU weight (Docker's cpu_shares), the default once released
    assert engine.when("cpu_shares", "api=1024") >= engine.when("released", "api")


def test_a_failed_job_never_releases_the_held_api_and_fails_up() -> None:
    engine = FakeEngine({"migrate": Behaviour(exit_after=0.1, exit_code=3)})
    with pytest.raises(ServiceFailed, match="migrate: exited with code 3"):
        run_up(engine, held_stack())
    assert engine.happened("start", "api")  # started early, held
    assert not engine.happened("signal", "api") and not engine.happened("signal", "worker")
    assert not engine.happened("released", "api")
    # and stopped: nothing stays up that never ran its program
    assert engine.happened("stop", "api") and engine.happened("stop", "worker")


def test_a_release_lost_before_the_gate_listened_is_sent_again() -> None:
    engine = FakeEngine({"migrate": Behaviour(exit_after=0.05), "api": Behaviour(lost_signals=3)})
    ready = run_up(engine, held_stack())
    assert "api" in ready and engine.happened("released", "api")


def test_a_kept_released_container_is_not_held_and_a_restarted_one_runs_at_once() -> None:
    engine = FakeEngine({"migrate": Behaviour(exit_after=0.05)})
    stack = held_stack()
    run_up(engine, stack)
    calls = len(engine.calls)
    again = run_up(engine, stack)  # the job runs again; the API and worker are kept
    assert "api" in again
    kept = ("api", "worker")
    assert not [c for c in engine.calls[calls:] if c[1:] in {("start", n) for n in kept}]
    assert not [c for c in engine.calls[calls:] if c[1:] in {("released", n) for n in kept}]
    observed = engine.snapshot("demo", [])
    existing = {n: c.id for n, c in observed.containers.items()}
    Executor(engine, stack, lambda e: None).run(plan_restart(stack, observed, ["api"]), 5, existing)
    api = next(c for c in engine.containers.values() if c.service.name == "api")
    assert api.ready()  # the marker: a restart is not held again


@dataclass(frozen=True)
class Counted(Scripted):
    """Scripted, and when each attempt came."""

    attempts: list[float] = field(default_factory=list, compare=False, hash=False)

    def check(self, target: CheckTarget) -> None:
        self.attempts.append(time.monotonic())
        super().check(target)


def test_a_fixed_poll_interval_checks_at_that_pace_instead_of_backing_off() -> None:
    """The bench's readiness floor runs the same plan and executor, polling every 20 ms."""

    def attempts(poll: float | None) -> list[float]:
        check = Counted()
        stack = make_stack(replace(service("postgres"), readiness=check))
        engine = FakeEngine({"postgres": Behaviour(ready_after=0.4)})
        plan = plan_up(stack, engine.snapshot(stack.project, []))
        Executor(engine, stack, lambda e: None, poll=poll).run(plan, 5, {})
        return check.attempts

    fixed = attempts(0.01)
    gaps = [later - earlier for earlier, later in itertools.pairwise(fixed)]
    assert len(fixed) >= 20 and statistics.median(gaps) < 0.03
    assert len(attempts(None)) < len(fixed) / 2  # the default backs off to 50 ms


def test_services_without_the_built_image_start_while_it_builds(tmp_path: Path) -> None:
    """First `up` of a fresh clone: Postgres and Redis (pulled images, present) start while
    the application's image builds; the build here only ends once both were started, so a
    plan that makes every container wait for every image never gets there."""
    from devstack.converge.engine_protocol import BuildRequest
    from devstack.declare.spec import Build

    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    started = threading.Event()

    @dataclass
    class SlowBuild(FakeEngine):
        def start(self, container: str) -> None:
            super().start(container)
            if {"postgres", "redis"} <= {c for _, call, c in self.calls if call == "start"}:
                started.set()

        def build(self, request: BuildRequest) -> Iterator[dict[str, Any]]:
            self._record("build", request.tag)
            if not started.wait(timeout=3):
                yield {"error": "the databases did not start while the image was building"}
            yield {"stream": "Step 1/1 : FROM scratch\n"}
            self.images[request.tag] = f"sha256:{request.tag}"
            self._record("built", request.tag)

    build = Build(tmp_path)
    api = replace(
        service("api", Dependency("postgres"), Dependency("redis")),
        build=build,
        image="devstack/api:h1",
    )
    stack = make_stack(service("postgres"), service("redis"), api)
    engine = SlowBuild(images={"img/postgres": "sha256:pg", "img/redis": "sha256:redis"})
    run_up(engine, stack)
    assert engine.when("start", "postgres") < engine.when("built", "devstack/api:h1")
    assert engine.when("start", "redis") < engine.when("built", "devstack/api:h1")
    assert engine.when("built", "devstack/api:h1") < engine.when("create", "api")


# a stack file read for its settings only (the test declares its stack itself)
SETTINGS_ONLY = (
    "from devstack import recipes as r\n\n"
    "def stack(env):\n    return r.stack(env, r.container(env, 'unused', 'unused:1'))\n"
)


def test_a_no_op_up_trusts_what_up_found_ready_until_docker_checks(tmp_path: Path) -> None:
    """Right after `up`, Docker's first health check is still pending: a second `up` reads in
    the listing whether each container still runs the start `up` found ready (its network
    endpoints are new at every start) instead of running its check again or inspecting it; a
    container started since is checked."""
    from devstack.converge import verdicts
    from devstack.usecases import _trusted, load_project

    class Counting(Scripted):
        def check(self, target: CheckTarget) -> None:
            checks.append(target.container)
            super().check(target)

    checks: list[str] = []
    stack = make_stack(*(replace(s, readiness=Counting()) for s in SEED.services))
    engine = FakeEngine()
    run_up(engine, stack)
    for container in engine.containers.values():
        container.health = "health: starting"
    ids = {c.service.name: c.id for c in engine.containers.values()}
    (tmp_path / "stack.py").write_text(SETTINGS_ONLY)
    (tmp_path / ".env").write_text("DEVSTACK_PROJECT=demo\n")
    project = load_project(tmp_path)
    seen = engine.snapshot("demo", []).containers
    verdicts.record(tmp_path, "demo", {c.id: c.start_mark for c in seen.values()})
    engine.restart(ids["api"])  # a later start than the one recorded: checked again
    checks.clear()
    observed = engine.snapshot("demo", [s.image for s in stack.services])
    trusted = _trusted(project, observed, stack)
    assert sorted(trusted) == ["postgres", "redis"]
    plan = plan_up(stack, observed, ready=trusted)
    existing = {n: c.id for n, c in observed.containers.items()}
    Executor(engine, stack, lambda e: None).run(plan, 5, existing)
    assert checks == [ids["api"]]


def test_up_without_a_group_removes_its_containers_that_up_had_found_ready(
    tmp_path: Path,
) -> None:
    """`up --with extra`, then `up` while Docker's first health checks are pending: the
    group's containers were trusted as ready (an earlier `up` found them so) and then removed;
    recording the verdicts looked them up among what runs after (KeyError: 'extra')."""
    from devstack import usecases
    from devstack.converge import verdicts

    (tmp_path / "stack.py").write_text(SETTINGS_ONLY)
    (tmp_path / ".env").write_text("DEVSTACK_PROJECT=demo\n")
    settings = usecases.load_project(tmp_path).settings
    declared = make_stack(service("base"), replace(service("extra"), group="extra"))
    with_group = usecases.Project(settings, replace(declared, groups_on=frozenset({"extra"})))
    engine = FakeEngine()
    usecases.up(with_group, engine, lambda e: None)
    for container in engine.containers.values():
        container.health = "health: starting"  # Docker has not checked them yet
    seen = engine.snapshot("demo").containers.values()
    verdicts.record(tmp_path, "demo", {c.id: c.start_mark for c in seen})
    without = usecases.Project(settings, declared.active(), declared)
    outcome = usecases.up(without, engine, lambda e: None)
    assert sorted(outcome.observed.containers) == ["base"]


@dataclass
class CountedCreates(FakeEngine):
    """Container creations that take a while, counted while they run."""

    active: int = 0
    most: int = 0

    def create_container(self, stack: Stack, service: Service, *args: Any, **kw: Any) -> str:
        with self.lock:
            self.active += 1
            self.most = max(self.most, self.active)
        time.sleep(0.1)  # the engine's work, not a wait
        try:
            return super().create_container(stack, service, *args, **kw)
        finally:
            with self.lock:
                self.active -= 1


def test_containers_are_made_a_few_at_a_time_the_ones_others_wait_for_first() -> None:
    caches = [service(f"cache{i}") for i in range(3 * CONTENDING_AT_ONCE)]
    stack = make_stack(*caches, service("db"), service("app", Dependency("db")))
    engine = CountedCreates()
    # every image here: no pulls, whose ends (in any order) would make the creations ready
    # one by one; all wait on the network only and are ready at once, to be ranked
    engine.images |= {s.image: f"sha256:{s.name}" for s in stack.services}
    ready = run_up(engine, stack)
    assert set(ready) == {s.name for s in stack.services}
    assert engine.most == CONTENDING_AT_ONCE  # no more, and as many as allowed
    # declared after the caches, but the app waits on it: the database is in the first batch
    # (launched first; the batch's threads call the engine in any order), not the fourth
    creates = [subject for _, call, subject in engine.calls if call == "create"]
    assert "db" in creates[:CONTENDING_AT_ONCE], creates


def test_urgency_counts_what_follows_on_the_longest_path() -> None:
    stack = make_stack(service("cache"), service("db"), service("app", Dependency("db")))
    plan = plan_up(stack, FakeEngine().snapshot(stack.project, []))
    urgency = plan.urgency()
    by_service = {
        (op.service_name, op.action.value): urgency[op.key]
        for op in plan.operations
        if op.service_name
    }
    assert by_service[("cache", "create")] == 2  # its start, its readiness
    assert by_service[("db", "create")] == 4  # its start and readiness, the app's start and
    assert by_service[("app", "wait")] == 0  # readiness; nothing follows the last step
