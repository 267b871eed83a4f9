"""Init templates (devstack.converge.templates) on the in-memory engine: what keys a template,
the one-off that makes it, the seed step that copies it before the first start, and the repair
of a copy cut off halfway. The real thing: tests/integration/test_init_template.py."""

from __future__ import annotations

import stat
from dataclasses import replace
from pathlib import Path

import pytest

from devstack.converge import templates
from devstack.converge.executor import Executor
from devstack.converge.plan import Action, plan_up
from devstack.declare.spec import Healthcheck, InitTemplate, Mount, Port, Service, Stack
from devstack.errors import DevstackError, DockerApiError, ServiceFailed

from .fake_engine import Behaviour, FakeEngine, Scripted

DATA = "/var/lib/db"
HEALTH = Healthcheck(("CMD", "ready"), 5.0, 1.0, 3, start_period=60.0)


def db(**changes: object) -> Service:
    service = Service(
        "db",
        "img/db",
        environment=(("DB_PASSWORD", "one"),),
        mounts=(Mount("demo_data", DATA, "volume"),),
        healthcheck=HEALTH,
        readiness=Scripted(),
        init_template=InitTemplate(DATA),
        stop_signal="SIGINT",
    )
    return replace(service, **changes)  # type: ignore[arg-type]


def make_stack(service: Service) -> Stack:
    return Stack("demo", "demo_net", ("demo_data",), (service,))


def run_up(engine: FakeEngine, stack: Stack, directory: Path) -> list[object]:
    events: list[object] = []
    observed = engine.snapshot(stack.project, [s.image for s in stack.services])
    existing = {n: c.id for n, c in observed.containers.items()}
    plan = plan_up(stack, observed)
    Executor(engine, stack, events.append, templates=directory).run(plan, 5.0, existing)
    return events


def engine(**behaviour: object) -> FakeEngine:
    fake = FakeEngine({"db": Behaviour(health="healthy", stop_code=0, **behaviour)})  # type: ignore[arg-type]
    fake.images["img/db"] = "sha256:aaa"
    fake.archives["db"] = b"the first start's volume"
    return fake


def test_the_key_follows_every_input_of_the_initialisation(tmp_path: Path) -> None:
    scripts = tmp_path / "initdb.d"
    scripts.mkdir()
    (scripts / "01.sql").write_text("CREATE TABLE t ()")
    service = db(mounts=(*db().mounts, Mount(str(scripts), "/docker-entrypoint-initdb.d", "bind")))
    key = templates.inputs_key(service, "sha256:aaa")
    assert key == templates.inputs_key(service, "sha256:aaa")
    changed = [
        templates.inputs_key(service, "sha256:bbb"),  # another image
        templates.inputs_key(replace(service, environment=(("DB_PASSWORD", "two"),)), "sha256:aaa"),
        templates.inputs_key(replace(service, command=("db", "-c", "x=1")), "sha256:aaa"),
        templates.inputs_key(replace(service, user="1000"), "sha256:aaa"),
    ]
    (scripts / "01.sql").write_text("CREATE TABLE u ()")  # an init script's content
    changed.append(templates.inputs_key(service, "sha256:aaa"))
    (scripts / "02.sh").write_text("true")  # one more init script
    changed.append(templates.inputs_key(service, "sha256:aaa"))
    assert len({key, *changed}) == len(changed) + 1
    # what the initialisation cannot see leaves it alone
    port = Port("127.0.0.1", 5999, 5432)
    same = replace(service, ports=(port,), healthcheck=replace(HEALTH, interval=1.0))
    (scripts / "02.sh").unlink()
    (scripts / "01.sql").write_text("CREATE TABLE t ()")
    assert templates.inputs_key(same, "sha256:aaa") == key


def test_a_first_up_initialises_the_volume_in_an_isolated_one_off_and_keeps_it(
    tmp_path: Path,
) -> None:
    fake = engine()
    made: list[tuple[str, bool, tuple[Mount, ...], float]] = []
    create = fake.create_container

    def spy(stack: Stack, service: Service, one_off: str = "", isolated: bool = False) -> str:
        assert service.healthcheck is not None
        made.append((one_off, isolated, service.mounts, service.healthcheck.interval))
        return create(stack, service, one_off, isolated)

    fake.create_container = spy  # type: ignore[method-assign]
    run_up(fake, make_stack(db()), tmp_path)
    own, maker = made
    assert own == ("", False, db().mounts, HEALTH.interval)  # its own is as declared
    # the one-off: nameless on the network, on the new volume, checked every MAKER_INTERVAL
    assert maker == (templates.MAKER, True, db().mounts, templates.MAKER_INTERVAL)
    # healthy, stopped gracefully, read, removed; then the service's own first start
    one_off = "db-init-template"
    assert fake.when("stop", one_off) < fake.when("archive", f"demo-{one_off}")
    assert fake.when("discard", one_off) < fake.when("start", "db")
    assert [c for c in fake.containers.values() if c.one_off] == []
    (kept,) = tmp_path.glob("db-*.tar")
    assert kept.read_bytes() == b"the first start's volume"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600  # it holds password hashes
    assert "demo-db" not in fake.extracted  # initialised already: nothing to copy
    assert not list(tmp_path.glob("seeding-*"))


def test_a_later_new_volume_is_copied_without_a_first_start(tmp_path: Path) -> None:
    run_up(engine(), make_stack(db()), tmp_path)
    fake = engine()
    fake.archives["db"] = b"not read"
    events = run_up(fake, make_stack(db()), tmp_path)
    assert not fake.happened("create", "db-init-template")
    # into the volume's parent, before the first start
    assert fake.extracted["demo-db"] == ("/var/lib", b"the first start's volume")
    assert fake.when("extract", "demo-db") < fake.when("start", "db")
    assert "kept as its init template" not in str(events)


def test_another_password_makes_another_template(tmp_path: Path) -> None:
    run_up(engine(), make_stack(db()), tmp_path)
    fake = engine()
    fake.archives["db"] = b"the second password's"
    run_up(fake, make_stack(db(environment=(("DB_PASSWORD", "two"),))), tmp_path)
    assert fake.happened("create", "db-init-template") and not fake.extracted
    kept = {p.read_bytes() for p in tmp_path.glob("db-*.tar")}
    assert kept == {b"the first start's volume", b"the second password's"}


def test_only_the_most_recently_used_templates_are_kept(tmp_path: Path) -> None:
    for n in range(templates.KEEP + 2):
        run_up(engine(), make_stack(db(environment=(("DB_PASSWORD", str(n)),))), tmp_path)
    assert len(list(tmp_path.glob("db-*.tar"))) == templates.KEEP


def test_a_kept_volume_is_not_seeded(tmp_path: Path) -> None:
    fake = engine()
    fake.volumes.add("demo_data")
    run_up(fake, make_stack(db()), tmp_path)
    assert not fake.extracted
    assert not fake.happened("create", "db-init-template")


def test_a_first_start_that_fails_fails_up_and_leaves_no_template(tmp_path: Path) -> None:
    fake = engine(exit_after=0.0, exit_code=3)
    with pytest.raises(ServiceFailed, match=r"its first start .*exited with code 3"):
        run_up(fake, make_stack(db()), tmp_path)
    assert not list(tmp_path.glob("*.tar"))
    assert [c for c in fake.containers.values() if c.one_off] == []
    # its volume is half initialised: the next `up` starts it over
    assert (tmp_path / f"{templates.SEEDING}demo_data").read_text() == "demo-db"


def test_a_first_start_that_does_not_stop_cleanly_is_not_kept(tmp_path: Path) -> None:
    fake = engine()
    fake.behaviours["db"].stop_code = 137
    with pytest.raises(ServiceFailed, match="did not stop cleanly"):
        run_up(fake, make_stack(db()), tmp_path)
    assert not list(tmp_path.glob("*.tar"))


def test_a_copy_cut_off_halfway_is_removed_and_made_again(tmp_path: Path) -> None:
    stack = make_stack(db())
    run_up(engine(), stack, tmp_path)
    fake = engine()
    fake.volumes.add("demo_data")
    fake.create_container(stack, stack.service("db"))  # created, never started, half filled
    fake.create_container(stack, stack.service("db"), one_off=templates.MAKER)  # a first start
    (tmp_path / f"{templates.SEEDING}demo_data").write_text("demo-db")
    (tmp_path / f"{templates.SEEDING}other_data").write_text("other-db")  # another project's
    assert templates.repair(fake, stack, tmp_path) == ["demo_data"]
    assert fake.happened("discard", "db") and fake.happened("remove_volume", "demo_data")
    assert not fake.containers
    assert (tmp_path / f"{templates.SEEDING}other_data").exists()
    run_up(fake, stack, tmp_path)
    assert fake.extracted["demo-db"][1] == b"the first start's volume"


def test_without_a_templates_directory_the_image_initialises_its_volume() -> None:
    fake = engine()
    stack = make_stack(db())
    observed = fake.snapshot(stack.project, ["img/db"])
    plan = plan_up(stack, observed)
    assert [op.action for op in plan.operations if op.key == "seed:db"] == [Action.SEED]
    Executor(fake, stack, lambda _: None).run(plan, 5.0, {})
    assert not fake.extracted and not fake.happened("create", "db-init-template")


def test_a_declaration_needs_the_volume_and_a_health_check() -> None:
    with pytest.raises(ValueError, match="needs a volume at /elsewhere"):
        make_stack(db(init_template=InitTemplate("/elsewhere")))
    with pytest.raises(ValueError, match="needs a health check"):
        make_stack(db(healthcheck=None))


def test_without_a_writable_cache_the_image_initialises_its_volume(tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")
    fake = engine()
    events = run_up(fake, make_stack(db()), blocked / "templates")
    assert not fake.extracted and not fake.happened("create", "db-init-template")
    assert fake.happened("start", "db")
    assert "no init template" in str(events)
    assert templates.repair(fake, make_stack(db()), None) == []


def test_a_template_that_cannot_be_copied_is_dropped_and_the_volume_started_over(
    tmp_path: Path,
) -> None:
    stack = make_stack(db())
    run_up(engine(), stack, tmp_path)
    fake = engine()

    def broken(container: str, path: str, data: object) -> None:
        raise DockerApiError("unexpected EOF")

    fake.extract = broken  # type: ignore[assignment,method-assign]
    with pytest.raises(DevstackError, match=r"could not be copied .*unexpected EOF") as caught:
        run_up(fake, stack, tmp_path)
    assert caught.value.hint and "run `up` again" in caught.value.hint
    assert not list(tmp_path.glob("*.tar"))  # a new one is made next time
    assert (tmp_path / f"{templates.SEEDING}demo_data").exists()  # and the volume redone
