"""The stack description and the status rows derived from a snapshot."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from devstack.converge.status import rows_as_json, status_rows, unwatched

from .helpers import container_row, observed, settings, stack


def test_seed_services(tmp_path: Path) -> None:
    s = stack(tmp_path)
    assert [x.name for x in s.services] == ["postgres", "redis", "migrate", "api", "worker"]
    assert s.start_order() == ["postgres", "redis", "migrate", "api", "worker"]
    pg, redis, migrate, api, worker = s.services
    assert migrate.one_shot and migrate.dependency_names == ("postgres",)
    assert api.build == worker.build == migrate.build  # one image, one build
    assert worker.ports == () and worker.readiness is not None
    assert pg.ports[0].host_port == 5433 and pg.ports[0].container_port == 5432
    assert redis.command == ("redis-server", "--appendonly", "yes")
    assert api.dependency_names == ("postgres", "redis", "migrate")
    assert pg.healthcheck and pg.healthcheck.interval == 10 and pg.healthcheck.retries == 3
    assert "pg_isready" in pg.healthcheck.test[1] and "$POSTGRES_USER" in pg.healthcheck.test[1]
    assert redis.healthcheck and redis.healthcheck.test == ("CMD", "redis-cli", "ping")
    assert api.healthcheck and "http://localhost:8000/health" in api.healthcheck.test
    assert all(p.host_ip == "127.0.0.1" for x in s.services for p in x.ports)


def test_dev_mode_bind_mounts_service_read_only(tmp_path: Path) -> None:
    api = stack(tmp_path).service("api")
    assert "/opt/devstack/devserver.py" in api.command and "--watch" in api.command
    assert {(m.kind, m.target, m.read_only) for m in api.mounts} == {
        ("bind", "/app/service", True),
        ("bind", "/opt/devstack", True),  # devstack/programs: devserver.py and gate.py
    }
    (programs,) = [m for m in api.mounts if m.target == "/opt/devstack"]
    assert {"devserver.py", "gate.py"} <= {p.name for p in Path(programs.source).iterdir()}
    assert api.build is not None and api.build.target == "dev"
    prod = stack(tmp_path, "DEVSTACK_DEV_MODE=false\n").service("api")
    assert prod.command[0] == "uvicorn" and prod.mounts == () and prod.held is None
    assert prod.build is not None and prod.build.target == "runtime"


def test_dev_mode_holds_the_job_api_and_worker_behind_the_gate(tmp_path: Path) -> None:
    dev = stack(tmp_path)
    for name in ("migrate", "api", "worker"):
        service = dev.service(name)
        assert service.held is not None, name
        gate = service.command.index(service.held.gate)
        assert service.command[:gate] == ("python",)
        assert service.command[service.command.index("--") + 1] == "python", name
        gate_dir, _, gate_file = service.held.gate.rpartition("/")
        (mount,) = [m for m in service.mounts if m.target == gate_dir]
        assert mount.read_only and (Path(mount.source) / gate_file).is_file(), name
    assert not any(m.startswith("service.") for m in dev.service("api").held.preload)  # type: ignore[union-attr]
    for name in ("postgres", "redis"):
        assert dev.service(name).held is None
    prod_stack = stack(tmp_path, "DEVSTACK_DEV_MODE=false\n")
    assert all(s.held is None for s in prod_stack.services)


def test_api_env_derived_and_passed_through(tmp_path: Path) -> None:
    s = settings(tmp_path, "POSTGRES_USER=u\nPOSTGRES_PASSWORD=p\nAI_AGENTS_LOG_LEVEL=debug\n")
    from tests.unit.helpers import declare_stack

    env = dict(declare_stack(s).service("api").environment)
    assert env["AI_AGENTS_DATABASE_URL"] == "postgresql+asyncpg://u:p@postgres:5432/devstack"
    assert env["AI_AGENTS_REDIS_URL"].endswith("/0")
    assert env["AI_AGENTS_CELERY_BROKER_URL"].endswith("/1")
    assert env["AI_AGENTS_LOG_LEVEL"] == "debug"


def test_config_fields_hold_no_secret(tmp_path: Path) -> None:
    pg = stack(tmp_path, "POSTGRES_PASSWORD=hunter2-secret\n").service("postgres")
    assert "hunter2-secret" not in repr(pg.config_fields())


def test_status_rows_mask_password_and_show_missing(tmp_path: Path) -> None:
    s = stack(tmp_path, "POSTGRES_PASSWORD=hunter2-secret\n")
    rows = status_rows(s, observed(s, {"postgres": "running"}))
    assert [(r.service, r.state) for r in rows] == [
        ("postgres", "running"),
        ("redis", "missing"),
        ("migrate", "missing"),
        ("api", "missing"),
        ("worker", "missing"),
    ]
    assert rows[0].ports == ("postgresql://devstack:***@127.0.0.1:5433/devstack",)
    assert rows[0].health == "healthy" and rows[0].uptime == "2 minutes"
    assert "hunter2" not in repr(rows_as_json(s.project, rows))


def test_status_marks_drift(tmp_path: Path) -> None:
    before = stack(tmp_path)
    after = stack(tmp_path, "DEVSTACK_REDIS_PORT=6400\n")
    rows = status_rows(after, observed(before, {"redis": "running"}))
    assert rows[1].drift == "ports changed"


def test_a_group_turned_off_brings_no_volume_of_its_own() -> None:
    """`up` creates the volumes of the services turned on only: a group turned off (e.g.
    monitoring) made every plain `up` create its volumes, and the plugin call that drift."""
    from devstack.declare.spec import Mount, Service, Stack

    db = Service("db", "img", mounts=(Mount("p_data", "/data", "volume"),))
    metrics = Service("metrics", "img", group="extra", mounts=(Mount("p_tsdb", "/t", "volume"),))
    declared = Stack("p", "p_net", ("p_data", "p_tsdb"), (db, metrics))
    assert declared.active().volumes == ("p_data",)
    on = Stack("p", "p_net", ("p_data", "p_tsdb"), (db, metrics), groups_on=frozenset({"extra"}))
    assert on.active().volumes == ("p_data", "p_tsdb")


def test_a_group_turned_off_brings_no_secret_of_its_own() -> None:
    """The export of a stack without its monitoring group refused --secrets-from-env over
    GRAFANA_ADMIN_PASSWORD, a secret only that group's (turned off) service uses."""
    from devstack.declare.spec import File, Service, Stack

    db = Service("db", "img", environment=(("PASSWORD", "s3cret-db"),))
    ui = Service("ui", "img", group="extra", files=(File("/etc/ui.ini", "pw=s3cret-ui"),))
    secrets = (("DB_PASSWORD", "s3cret-db"), ("UI_PASSWORD", "s3cret-ui"))
    declared = Stack("p", "p_net", (), (db, ui), secrets, ("DB_PASSWORD", "UI_PASSWORD"))
    assert declared.active().secrets == (("DB_PASSWORD", "s3cret-db"),)
    assert declared.active().example_secrets == ("DB_PASSWORD",)
    on = replace(declared, groups_on=frozenset({"extra"})).active()
    assert on.secrets == secrets
    assert on.example_secrets == ("DB_PASSWORD", "UI_PASSWORD")


def test_config_fields_digest_mounts_and_health_check_as_they_always_have(
    tmp_path: Path,
) -> None:
    """A new digest would recreate every container of every user on their next `up`: the
    mounts and the health check are still hashed as `dataclasses.asdict` renders them."""
    import hashlib
    import json
    from dataclasses import asdict

    def digest(value: object) -> str:
        blob = json.dumps(value, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    for service in stack(tmp_path).services:
        fields = service.config_fields()
        assert fields["mounts"] == digest([asdict(m) for m in service.mounts])
        health = asdict(service.healthcheck) if service.healthcheck else None
        assert fields["healthcheck"] == digest(health)


def test_a_dev_worker_restarts_beside_the_old_one_with_the_gates_imports(
    tmp_path: Path,
) -> None:
    """devserver starts the new worker while the old one finishes (--overlap), and imports
    what the gate had no time to before the first worker (the gate stops at its release),
    so no restart imports it again."""
    worker = stack(tmp_path).service("worker")
    assert worker.held is not None
    command = list(worker.command)
    devserver = command[command.index("--") + 1 :]
    assert "--overlap" in devserver
    assert devserver[devserver.index("--preload") + 1] == ",".join(worker.held.preload)


def test_a_service_without_a_docker_health_check_shows_its_own_readiness(tmp_path: Path) -> None:
    s = stack(tmp_path)
    watched = observed(s, {"postgres": "running", "redis": "running", "migrate": "exited"})
    rows = [
        {**row, "Status": "Up 2 minutes"}  # no "(healthy)": Docker watches no health
        for row in (container_row(s, "redis", "running"),)
    ]
    view = observed(s, {"postgres": "running", "migrate": "exited"}, rows=rows)
    assert unwatched(s, view) == ["redis"]  # not the job, not one Docker watches
    assert unwatched(s, watched) == []
    health = {r.service: r.health for r in status_rows(s, view, checked={"redis": False})}
    assert health["redis"] == "not ready" and health["postgres"] == "healthy"
    health = {r.service: r.health for r in status_rows(s, view, checked={"redis": True})}
    assert health["redis"] == "ready"
