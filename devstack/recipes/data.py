"""Recipes for the data services: PostgreSQL and Redis (the official images' contracts)."""

from __future__ import annotations

from devstack.declare.capabilities import Database, KeyValueStore, url_part
from devstack.declare.checks import PostgresLogin, RedisPing
from devstack.declare.settings import Env
from devstack.declare.spec import ClusterHints, InitTemplate, Link, Service, Shortcut
from devstack.recipes.base import healthcheck, publish, strings, volume

EXAMPLE_PASSWORD = "devstack-example-password"
DATA = "/var/lib/postgresql/data"  # the official image's PGDATA (and VOLUME)


THROWAWAY_COMMAND = (  # a server whose data dies with it: nothing to make durable
    "postgres",
    *("-c", "fsync=off", "-c", "full_page_writes=off", "-c", "synchronous_commit=off"),
)


def postgres(
    env: Env,
    name: str,
    *,
    image: str = "postgres:17-alpine",
    port_key: str = "DEVSTACK_POSTGRES_PORT",
    port_default: int = 5432,
    user: str = "postgres",
    password: str = EXAMPLE_PASSWORD,
    database: str = "postgres",
    application: bool = True,
    data_volume: str = "pgdata",
    group: str = "",
    title: str = "Postgres",
) -> Service:
    """PostgreSQL from an image honouring the official one's contract (POSTGRES_USER,
    POSTGRES_PASSWORD, POSTGRES_DB, PGDATA, `pg_isready`, SIGINT to stop). Ready when a TCP
    login with these credentials runs `SELECT 1`; offers the `Database` the `db` commands
    and the pytest plugin use (`application`: the application's, when there are two); adds
    the `psql` shortcut. Read `image`, `user`, ... from `.env` with `env.image(...)` etc."""
    url = f"postgresql://{url_part(user)}:***@{{host}}:{{port}}/{url_part(database)}"
    published = publish(env, port_key, port_default, 5432, url=url)
    return Service(
        name=name,
        title=title,
        image=image,
        environment=(
            ("POSTGRES_USER", user),
            ("POSTGRES_PASSWORD", password),
            ("POSTGRES_DB", database),
        ),
        ports=(published,),
        mounts=(volume(env, data_volume, DATA),),
        init_template=InitTemplate(DATA),
        healthcheck=healthcheck(
            env, ("CMD-SHELL", "pg_isready -h 127.0.0.1 -U $POSTGRES_USER -d $POSTGRES_DB")
        ),
        readiness=PostgresLogin(
            published.probe_host,
            published.host_port,
            user=user,
            password=password,
            database=database,
        ),
        stop_signal="SIGINT",
        # the official image's postgres user (70 on Alpine); data below the volume's root
        cluster=ClusterHints(
            uid=70 if "alpine" in image else 999,
            environment=(("PGDATA", "/var/lib/postgresql/data/pgdata"),),
            writable=("/var/run/postgresql",),  # its socket and lock file
            secret_files=("POSTGRES_PASSWORD",),  # POSTGRES_PASSWORD_FILE
        ),
        shortcuts=(
            Shortcut(
                "psql",
                f"psql in the {name} container, connected as the configured user",
                prefix=("psql", "-U", user, "-d", database),
                example="psql -c 'SELECT 1'",
            ),
        ),
        links=(Link(),),
        group=group,
        database=Database(
            user,
            password,
            database,
            published.host_port,
            5432,
            application,
            throwaway_command=THROWAWAY_COMMAND,
        ),
    )


def redis(
    env: Env,
    name: str,
    *,
    image: str = "redis:7-alpine",
    port_key: str = "DEVSTACK_REDIS_PORT",
    port_default: int = 6379,
    data_volume: str = "redisdata",
    databases: int = 16,
    links: tuple[str, ...] = ("{url}",),
    group: str = "",
    title: str = "Redis",
) -> Service:
    """Redis with append-only persistence in a volume. Ready when it answers `PING`; offers
    a `KeyValueStore` (the pytest plugin hands out the numbered databases no service declares
    it uses); adds the `redis-cli` shortcut."""
    published = publish(env, port_key, port_default, 6379, url="redis://{host}:{port}")
    return Service(
        name=name,
        title=title,
        image=image,
        command=("redis-server", "--appendonly", "yes"),
        ports=(published,),
        mounts=(volume(env, data_volume, "/data"),),
        healthcheck=healthcheck(env, ("CMD", "redis-cli", "ping")),
        readiness=RedisPing(published.probe_host, published.host_port),
        cluster=ClusterHints(uid=999),  # the official image's redis user
        shortcuts=(
            Shortcut(
                "redis-cli",
                f"redis-cli in the {name} container",
                prefix=("redis-cli",),
                example="redis-cli -n 1 keys '*'",
            ),
        ),
        links=tuple(Link(t) for t in strings(links, "links", name)),
        group=group,
        key_value=KeyValueStore(published.host_port, 6379, databases),
    )


def redis_url(service: Service, db: int) -> str:
    """The URL other services of the stack reach `service`'s database `db` at."""
    assert service.key_value is not None, f"{service.name} is not a Redis service"
    return f"redis://{service.name}:{service.key_value.container_port}/{db}"


def database_url(service: Service, scheme: str = "postgresql+asyncpg") -> str:
    """The DSN other services of the stack reach `service`'s application database at."""
    assert service.database is not None, f"{service.name} is not a database service"
    return service.database.url(service.name, scheme=scheme)
