"""Recipes for monitoring: Prometheus (its scrape configuration is derived from the stack:
see `scrape`), the standard Postgres and Redis exporters, and Grafana with a provisioned
Prometheus datasource and the project's dashboards. Each takes the official image by
default (`scripts/local-images.sh` builds offline stand-ins for all but Grafana)."""

from __future__ import annotations

import json
from collections.abc import Mapping

from devstack.declare.capabilities import Database, KeyValueStore, MetricsStore, url_part
from devstack.declare.checks import ExecCommand
from devstack.declare.settings import Env
from devstack.declare.spec import Dependency, File, Link, Metrics, Service
from devstack.recipes.base import healthcheck, http, publish, ready, volume

PROMETHEUS_IMAGE = "prom/prometheus:v2.55.1"
POSTGRES_EXPORTER_IMAGE = "quay.io/prometheuscommunity/postgres-exporter:v0.16.0"
REDIS_EXPORTER_IMAGE = "oliver006/redis_exporter:v1.67.0-alpine"
GRAFANA_IMAGE = "grafana/grafana:11.3.0"
FAILED = 3  # an exporter's check: up but cannot reach its server (failed for good)


def prometheus(
    env: Env,
    name: str,
    *,
    image: str = PROMETHEUS_IMAGE,
    port_key: str = "DEVSTACK_PROMETHEUS_PORT",
    port_default: int = 9090,
    scrape_interval: str = "2s",
    retention: str = "2d",
    data_volume: str = "prometheus",
    group: str = "monitoring",
    title: str = "Prometheus",
) -> Service:
    """Prometheus scraping every service of the stack that declares metrics (itself too),
    every `scrape_interval`, keeping `retention` of data in a volume. Ready when `/-/ready`
    answers; `top` reads it."""
    port = publish(env, port_key, port_default, 9090, url="http://{host}:{port}")
    return Service(
        name=name,
        title=title,
        image=image,
        command=(
            "--config.file=/etc/prometheus/prometheus.yml",
            "--storage.tsdb.path=/prometheus",
            f"--storage.tsdb.retention.time={retention}",
        ),
        ports=(port,),
        mounts=(volume(env, data_volume, "/prometheus"),),
        healthcheck=healthcheck(env, ("CMD", "wget", "-qO-", "http://127.0.0.1:9090/-/ready")),
        readiness=http(port, "/-/ready"),
        links=(Link(),),
        group=group,
        metrics=Metrics(9090),
        metrics_store=MetricsStore(port.host_port, 9090, scrape_interval),
    )


def _exporter_check(port: int, up_metric: str, why: str) -> tuple[str, ...]:
    """Ready when the exporter answers and reports `up_metric 1`; `up_metric 0` fails at once."""
    script = (
        f"body=$(wget -qO- http://127.0.0.1:{port}/metrics) "
        f"|| {{ echo 'no metrics on port {port} yet'; exit 1; }}; "
        f'case "$body" in *"{up_metric} 1"*) exit 0;; *"{up_metric} 0"*) '
        f"echo '{up_metric} is 0: {why}'; exit {FAILED};; esac; "
        f"echo 'no {up_metric} yet'; exit 1"
    )
    return ("sh", "-c", script)


def _exporter(
    env: Env,
    name: str,
    image: str,
    port: int,
    environment: Mapping[str, str],
    server: Service,
    up_metric: str,
    why: str,
    group: str,
) -> Service:
    check = _exporter_check(port, up_metric, why)
    return Service(
        name=name,
        title=name,
        image=image,
        environment=tuple(sorted(environment.items())),
        healthcheck=healthcheck(env, ("CMD", *check)),
        readiness=ExecCommand(check, failed_exit=FAILED),
        depends_on=(ready(server),),
        group=group,
        metrics=Metrics(port),
    )


def postgres_exporter(
    env: Env,
    name: str,
    database: Service,
    *,
    image: str = POSTGRES_EXPORTER_IMAGE,
    group: str = "monitoring",
) -> Service:
    """postgres_exporter for `database` (a `postgres(...)` service), logged in as its user:
    connections, transactions, sizes. Ready once it reports `pg_up 1`; a login it cannot make
    fails `up` at once, naming this service."""
    db: Database | None = database.database
    if db is None:
        raise ValueError(f"{name}: {database.name} offers no database (declare it with postgres)")
    dsn = (
        f"postgresql://{url_part(db.user)}:{url_part(db.password)}@{database.name}:"
        f"{db.container_port}/{url_part(db.name)}?sslmode=disable"
    )
    why = f"it cannot log in to {database.name} as {db.user} (see `devstack logs {name}`)"
    environment = {"DATA_SOURCE_NAME": dsn}
    return _exporter(env, name, image, 9187, environment, database, "pg_up", why, group)


def redis_exporter(
    env: Env,
    name: str,
    redis: Service,
    *,
    image: str = REDIS_EXPORTER_IMAGE,
    group: str = "monitoring",
) -> Service:
    """redis_exporter for `redis` (a `redis(...)` service): memory, commands, keys, clients.
    Ready once it reports `redis_up 1`; a server it cannot reach fails `up` at once."""
    store: KeyValueStore | None = redis.key_value
    if store is None:
        raise ValueError(f"{name}: {redis.name} offers no Redis (declare it with redis)")
    environment = {"REDIS_ADDR": f"redis://{redis.name}:{store.container_port}"}
    why = f"it cannot reach {redis.name} (see `devstack logs {name}`)"
    return _exporter(env, name, image, 9121, environment, redis, "redis_up", why, group)


def grafana(
    env: Env,
    name: str,
    prometheus: Service,
    *,
    dashboards: Mapping[str, str] | None = None,
    image: str = GRAFANA_IMAGE,
    port_key: str = "DEVSTACK_GRAFANA_PORT",
    port_default: int = 3000,
    admin_password: str = "",
    data_volume: str = "grafana",
    group: str = "monitoring",
    title: str = "Grafana",
) -> Service:
    """Grafana with `prometheus` as its default datasource (uid `prometheus`) and
    `dashboards` (file name -> dashboard JSON) provisioned; anonymous users may view.
    Optional: where its image can neither be found nor pulled, `up` says so in one line and
    brings up the rest."""
    store = prometheus.metrics_store
    if store is None:
        raise ValueError(f"{name}: {prometheus.name} is not a Prometheus (recipes.prometheus)")
    port = publish(env, port_key, port_default, 3000, url="http://{host}:{port}")
    source = {
        "apiVersion": 1,
        "datasources": [
            {
                "name": "Prometheus",
                "uid": "prometheus",
                "type": "prometheus",
                "access": "proxy",
                "url": f"http://{prometheus.name}:{store.container_port}",
                "isDefault": True,
                "jsonData": {"timeInterval": store.scrape_interval},
            }
        ],
    }
    provider = {
        "apiVersion": 1,
        "providers": [
            {"name": "devstack", "type": "file", "options": {"path": DASHBOARDS}},
        ],
    }
    files = [
        File(f"{PROVISIONING}/datasources/devstack.yaml", json.dumps(source, indent=2)),
        File(f"{PROVISIONING}/dashboards/devstack.yaml", json.dumps(provider, indent=2)),
    ]
    for file_name, content in sorted((dashboards or {}).items()):
        json.loads(content)  # a broken dashboard is refused here, not by Grafana later
        files.append(File(f"{DASHBOARDS}/{file_name}", content))
    environment = {"GF_AUTH_ANONYMOUS_ENABLED": "true", "GF_AUTH_ANONYMOUS_ORG_ROLE": "Viewer"}
    if admin_password:
        environment["GF_SECURITY_ADMIN_PASSWORD"] = admin_password
    return Service(
        name=name,
        title=title,
        image=image,
        environment=tuple(sorted(environment.items())),
        ports=(port,),
        mounts=(volume(env, data_volume, "/var/lib/grafana"),),
        files=tuple(files),
        readiness=http(port, "/api/health"),
        depends_on=(Dependency(prometheus.name, before_start=False),),
        links=(Link(),),
        group=group,
        optional=True,
    )


PROVISIONING = "/etc/grafana/provisioning"
DASHBOARDS = "/etc/grafana/dashboards"
