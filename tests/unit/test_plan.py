"""Golden plans: the text `up --plan` and `down` work from, for each starting state."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from devstack.converge.plan import Action, plan_down, plan_up
from devstack.declare.spec import Mount

from .helpers import container_row, observed, stack

ALL_RUNNING = {
    "postgres": "running",
    "redis": "running",
    "migrate": "exited",
    "api": "running",
    "worker": "running",
}


def test_nothing_exists(tmp_path: Path) -> None:
    s = stack(tmp_path)
    plan = plan_up(s, observed(s, network=False, volumes=False, images=False))
    assert str(plan) == "\n".join(
        [
            "pull      image      postgres:17-alpine           (not present locally)",
            "pull      image      redis:7-alpine               (not present locally)",
            "build     image      devstack/api:abc             (inputs changed)",
            "create    network    demo_net                     (missing)",
            "create    volume     demo_pgdata                  (missing)",
            "create    volume     demo_redisdata               (missing)",
            "create    container  demo-postgres                (missing)",
            "create    container  demo-redis                   (missing)",
            "create    container  demo-migrate                 (missing)",
            "create    container  demo-api                     (missing)",
            "create    container  demo-worker                  (missing)",
            "seed      volume     demo_pgdata                  "
            "(new: a copy of postgres's init template)",
        ]
    )
    # the new volume is filled before Postgres' first start
    start = next(op for op in plan.operations if op.key == "start:postgres")
    assert start.after == ("container:postgres", "seed:postgres")
    seed = next(op for op in plan.operations if op.key == "seed:postgres")
    assert seed.after == ("container:postgres",)


def test_a_kept_volume_is_never_seeded(tmp_path: Path) -> None:
    s = stack(tmp_path)
    plan = plan_up(s, observed(s, network=False, volumes=True, images=False))
    assert not [op for op in plan.operations if op.action is Action.SEED]
    start = next(op for op in plan.operations if op.key == "start:postgres")
    assert start.after == ("container:postgres",)


def test_partly_up(tmp_path: Path) -> None:
    s = stack(tmp_path)
    plan = plan_up(s, observed(s, {"postgres": "running", "redis": "exited"}))
    assert [str(op) for op in plan.of_kind("container")] == [
        "keep      container  demo-postgres                (up to date)",
        "start     container  demo-redis                   (stopped)",
        "create    container  demo-migrate                 (missing)",
        "create    container  demo-api                     (missing)",
        "create    container  demo-worker                  (missing)",
    ]


def test_all_up_to_date_changes_nothing(tmp_path: Path) -> None:
    s = stack(tmp_path)
    plan = plan_up(s, observed(s, ALL_RUNNING))
    assert plan.changes == ()
    assert "image      devstack/api:abc             (inputs unchanged)" in str(plan)


def test_config_changed_recreates_only_that_service(tmp_path: Path) -> None:
    before = stack(tmp_path)
    after = stack(tmp_path, "AI_AGENTS_REDIS_URL=redis://redis:6379/5\n")
    plan = plan_up(after, observed(before, ALL_RUNNING))
    assert [str(op) for op in plan.changes] == [  # the services that share the API's env
        "recreate  container  demo-migrate                 (env AI_AGENTS_REDIS_URL changed)",
        "recreate  container  demo-api                     (env AI_AGENTS_REDIS_URL changed)",
        "recreate  container  demo-worker                  (env AI_AGENTS_REDIS_URL changed)",
    ]


def test_port_change_is_explained(tmp_path: Path) -> None:
    before = stack(tmp_path)
    after = stack(tmp_path, "DEVSTACK_POSTGRES_PORT=5500\n")
    op = plan_up(after, observed(before, ALL_RUNNING)).container("postgres")
    assert op is not None and (op.action, op.cause) == (Action.RECREATE, "ports changed")


def test_updated_image_recreates(tmp_path: Path) -> None:
    s = stack(tmp_path)
    snap = observed(s, ALL_RUNNING)
    snap.image_ids["postgres:17-alpine"] = "sha256:newer"
    op = plan_up(s, snap).container("postgres")
    assert op is not None and op.cause == "image postgres:17-alpine was updated"


def test_subset_brings_dependencies(tmp_path: Path) -> None:
    s = stack(tmp_path)
    plan = plan_up(s, observed(s, network=False, volumes=False), ["api"])
    expected = ["postgres", "redis", "migrate", "api"]
    assert [op.service_name for op in plan.of_kind("container")] == expected
    plan = plan_up(s, observed(s), ["redis"])
    assert [op.service_name for op in plan.of_kind("container")] == ["redis"]


def test_orphan_is_kept_by_up_and_removed_by_down(tmp_path: Path) -> None:
    s = stack(tmp_path)
    orphan = container_row(s, "redis") | {
        "Id": "id-old",
        "Names": ["/demo-legacy"],
        "Labels": {"devstack.project": "demo", "devstack.service": "legacy"},
    }
    snap = observed(s, ALL_RUNNING, rows=[orphan])
    assert "keep      container  demo-legacy" in str(plan_up(s, snap))
    assert (
        str(plan_down(s, snap, volumes=False))
        .splitlines()[0]
        .startswith("remove    container  demo-legacy")
    )


def test_down_without_volumes_keeps_data(tmp_path: Path) -> None:
    s = stack(tmp_path)
    assert str(plan_down(s, observed(s, ALL_RUNNING), volumes=False)) == "\n".join(
        [
            "discard   container  demo-worker                  (disposable: nothing to flush)",
            "discard   container  demo-api                     (disposable: nothing to flush)",
            "remove    container  demo-migrate                 (down)",
            "remove    container  demo-redis                   (down)",
            "remove    container  demo-postgres                (down)",
            "remove    network    demo_net                     (down)",
            "keep      volume     demo_pgdata                  (data kept; --volumes deletes it)",
            "keep      volume     demo_redisdata               (data kept; --volumes deletes it)",
        ]
    )


def test_down_kills_what_the_declaration_calls_disposable_before_the_data_stops(
    tmp_path: Path,
) -> None:
    """The worker and the API (their recipes declare them disposable) are killed at once,
    side by side; Postgres and Redis stop gracefully, only once nothing that uses them runs."""
    s = stack(tmp_path)
    plan = plan_down(s, observed(s, ALL_RUNNING), volumes=False)
    ops = {op.service_name: op for op in plan.of_kind("container")}
    assert {n for n, op in ops.items() if op.action is Action.DISCARD} == {"worker", "api"}
    assert ops["worker"].after == () and ops["api"].after == ()
    assert ops["postgres"].action is Action.REMOVE and ops["redis"].action is Action.REMOVE
    assert {ops["worker"].key, ops["api"].key} <= set(ops["postgres"].after)
    assert {ops["worker"].key, ops["api"].key} <= set(ops["redis"].after)


def test_disposable_is_the_declarations_choice_not_the_name(tmp_path: Path) -> None:
    s = stack(tmp_path)
    kept = {"worker": False, "postgres": True}  # a worker that acks early; a throwaway db
    s = replace(
        s,
        services=tuple(
            replace(x, disposable=kept[x.name]) if x.name in kept else x for x in s.services
        ),
    )
    plan = plan_down(s, observed(s, ALL_RUNNING), volumes=False)
    actions = {op.service_name: op.action for op in plan.of_kind("container")}
    assert actions["worker"] is Action.REMOVE and actions["postgres"] is Action.DISCARD
    # still after its dependents: nothing that uses it runs while it goes
    (postgres,) = [op for op in plan.of_kind("container") if op.service_name == "postgres"]
    assert "remove:worker" in " ".join(postgres.after)
    assert s.service("worker").config_hash() == stack(tmp_path).service("worker").config_hash()


def test_down_with_volumes(tmp_path: Path) -> None:
    s = stack(tmp_path)
    plan = plan_down(s, observed(s, ALL_RUNNING), volumes=True)
    assert str(plan).splitlines()[-2:] == [
        "remove    volume     demo_pgdata                  (--volumes)",
        "remove    volume     demo_redisdata               (--volumes)",
    ]
    # all that the containers could keep goes too: no graceful stop, no order among them
    containers = plan.of_kind("container")
    assert {op.action for op in containers} == {Action.DISCARD}
    assert all(op.after == () for op in containers)
    (network,) = plan.of_kind("network")
    assert set(network.after) == {op.key for op in containers}


def test_down_with_volumes_stops_gracefully_what_writes_outside_them(tmp_path: Path) -> None:
    s = stack(tmp_path)
    api = s.service("api")
    uploads = Mount(str(tmp_path), "/app/uploads", "bind")
    writes = replace(api, mounts=(*api.mounts, uploads), disposable=False)
    s = replace(s, services=tuple(writes if x.name == "api" else x for x in s.services))
    plan = plan_down(s, observed(s, ALL_RUNNING), volumes=True)
    actions = {op.service_name: op.action for op in plan.of_kind("container")}
    assert actions.pop("api") is Action.REMOVE
    assert set(actions.values()) == {Action.DISCARD}


def test_down_removes_the_one_offs_an_interrupted_command_left_before_the_volumes(
    tmp_path: Path,
) -> None:
    s = stack(tmp_path)
    maker = container_row(s, "postgres", "running")
    maker["Names"] = ["/demo-postgres-init-template"]
    maker["Labels"]["devstack.one-off"] = "init-template"
    snap = observed(s, network=False, rows=[maker])
    assert snap.containers == {} and not snap.empty
    plan = plan_down(s, snap, volumes=True)
    (one_off,) = plan.of_kind("container")
    assert (one_off.action, one_off.name) == (Action.DISCARD, "demo-postgres-init-template")
    volumes = [op for op in plan.of_kind("volume")]
    assert volumes and all(one_off.key in op.after for op in volumes)
    # a subset's down leaves them to a whole one
    assert plan_down(s, snap, volumes=False, services=["postgres"]).operations == ()


def test_down_on_nothing_has_no_changes(tmp_path: Path) -> None:
    s = stack(tmp_path)
    snap = observed(s, network=False, volumes=False)
    assert plan_down(s, snap, volumes=True).changes == ()


def test_down_subset_stops_dependents_first(tmp_path: Path) -> None:
    s = stack(tmp_path)
    plan = plan_down(s, observed(s, ALL_RUNNING), volumes=True, services=["redis"])
    assert [op.service_name for op in plan.operations] == ["worker", "api", "redis"]


def test_a_container_whose_network_was_removed_is_recreated(tmp_path: Path) -> None:
    s = stack(tmp_path)
    rows = [
        container_row(s, name, "exited")
        | {"NetworkSettings": {"Networks": {s.network: {"NetworkID": "old-id"}}}}
        for name in ("postgres", "redis", "api")
    ]
    snap = observed(s, network=False, rows=rows)
    plan = plan_up(s, snap)
    assert "create    network    demo_net" in str(plan)
    op = plan.container("postgres")
    assert op is not None and (op.action, op.cause) == (
        Action.RECREATE,
        "its network demo_net was removed",
    )


def test_a_replaced_image_is_dropped_only_when_nobody_else_uses_it(tmp_path: Path) -> None:
    from dataclasses import replace

    from devstack.converge.observed import ImageUse

    s = stack(tmp_path)
    old = container_row(s, "api") | {"Image": "devstack/api:old"}
    rows = [container_row(s, "postgres"), container_row(s, "redis"), old]

    def drops(users: frozenset[str], built: bool = True) -> list[str]:
        snap = replace(
            observed(s, rows=rows), replaced_images={"devstack/api:old": ImageUse(built, users)}
        )
        return [str(op) for op in plan_up(s, snap).operations if op.kind == "image"]

    dropped = (
        "remove    image      devstack/api:old             "
        "(replaced; no container uses it any more)"
    )
    assert dropped in drops(frozenset({"demo-api"}))
    assert dropped not in drops(frozenset({"demo-api", "other-project-api"}))
    assert dropped not in drops(frozenset({"demo-api"}), built=False)  # not devstack's image


def test_held_services_start_with_postgres_and_are_released_after_what_they_need(
    tmp_path: Path,
) -> None:
    s = stack(tmp_path)  # dev mode: the job, the API and the worker are held
    graph = plan_up(s, observed(s, network=False, volumes=True, images=False)).graph()
    lines = set(graph.splitlines())
    assert "start:migrate <- container:migrate, start:postgres  [start]" in lines
    assert "release:migrate <- start:migrate, ready:postgres  [release]" in lines
    # not behind the job's start call: held containers start side by side
    start = "start:api <- container:api, start:postgres, start:redis"
    assert f"{start}  [start]" in lines
    assert "release:api <- start:api, ready:migrate  [release]" in lines
    assert "ready:api <- release:api, ready:postgres, ready:redis, ready:migrate  [wait]" in lines
    start = "start:worker <- container:worker, start:postgres, start:redis"
    assert f"{start}  [start]" in lines
    release = "release:worker <- start:worker, ready:postgres, ready:redis, ready:migrate"
    assert f"{release}  [release]" in lines


def test_held_services_start_while_postgres_new_volume_is_filled(tmp_path: Path) -> None:
    s = stack(tmp_path)
    graph = plan_up(s, observed(s, network=False, volumes=False, images=False)).graph()
    lines = set(graph.splitlines())
    assert "start:postgres <- container:postgres, seed:postgres  [start]" in lines
    # their start and preload overlap the copy; their release still waits for it to be ready
    assert "start:migrate <- container:migrate, container:postgres  [start]" in lines
    assert "release:migrate <- start:migrate, ready:postgres  [release]" in lines
    start = "start:api <- container:api, container:postgres, start:redis"
    assert f"{start}  [start]" in lines


def test_a_stopped_held_container_starts_in_order_and_a_kept_one_is_not_released(
    tmp_path: Path,
) -> None:
    # A stopped container may have been released before (its gate would not hold it): it
    # starts after its dependencies, as without holding. A running one is kept: no release.
    s = stack(tmp_path)
    plan = plan_up(s, observed(s, {**ALL_RUNNING, "api": "exited"}))
    lines = set(plan.graph().splitlines())
    start = "start:api <- container:api, ready:postgres, ready:redis, ready:migrate"
    assert f"{start}  [start]" in lines
    assert "release:api <- start:api  [release]" in lines
    assert not any(line.startswith("release:worker") for line in lines)
    assert not any(line.startswith("start:worker") for line in lines)


def test_a_name_longer_than_the_column_keeps_the_plan_aligned(tmp_path: Path) -> None:
    s = stack(tmp_path, "DEVSTACK_PROJECT=a-rather-long-project-name\n")
    lines = str(plan_up(s, observed(s, network=False, volumes=False))).splitlines()
    assert len({line.index("(") for line in lines}) == 1, "\n".join(lines)
    longest = max((line.split()[2] for line in lines), key=len)
    assert f" {longest} (" in str(plan_up(s, observed(s)))  # still a space before the cause
    short = stack(tmp_path)  # names that fit: the usual 28 columns, as before
    assert str(plan_up(short, observed(short))).splitlines()[0].index("(") == 9 + 1 + 10 + 1 + 29


def test_a_created_container_never_started_is_started_not_recreated(tmp_path: Path) -> None:
    """Docker lists a container that was never started with its network but no NetworkID
    yet (an `up` interrupted while the databases started during the build): start it."""
    from devstack.converge.observed import parse_snapshot

    s = stack(tmp_path)
    rows = [
        container_row(s, name, "created")
        | {"NetworkSettings": {"Networks": {s.network: {"NetworkID": ""}}}}
        for name in ("postgres", "redis")
    ]
    networks = [{"Name": s.network, "Id": "net-1"}]
    images = [{"Id": f"sha256:{i}", "RepoTags": [i]} for i in {x.image for x in s.services}]
    snap = parse_snapshot(s.project, rows, networks, [{"Name": v} for v in s.volumes], images)
    op = plan_up(s, snap).container("postgres")
    assert op is not None and (op.action, op.cause) == (Action.START, "created, not started")
