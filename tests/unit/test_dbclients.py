"""Telling the stack's own database clients from others (devstack.usecases.dbclients), the container
addresses they are told by (observed.container_addresses), and what `db` commands print."""

from __future__ import annotations

from datetime import UTC, datetime

from devstack.cli import db_lines
from devstack.converge.observed import container_addresses
from devstack.usecases.dbclients import SHOWN, Client, describe_all, split
from devstack.usecases.snapshots import Done

SINCE = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
OWN = {"172.18.0.5": "api", "172.18.0.6": "worker"}


def client(pid: int, address: str | None, application: str = "") -> Client:
    return Client(pid, application, address, SINCE)


def test_own_clients_connect_from_the_projects_containers() -> None:
    api, worker = client(1, "172.18.0.5"), client(2, "172.18.0.6")
    host = client(3, "172.18.0.1", "psql")  # the bridge's gateway: a client on the host
    local = client(4, None, "psql")  # a psql inside the postgres container (unix socket)
    ours, others = split([api, host, worker, local], OWN)
    assert ours == [api, worker]
    assert others == [host, local]


def test_other_clients_are_named_by_application_address_and_start() -> None:
    text = client(42, "172.18.0.1", "my-ide").describe()
    assert text.startswith("my-ide from 172.18.0.1 since ") and "(pid 42)" in text
    assert f"{SINCE.astimezone():%H:%M:%S}" in text
    assert "local socket" in client(7, None).describe()
    assert "without application_name" in client(7, "10.0.0.1").describe()


def test_many_clients_are_counted_past_the_first_few() -> None:
    clients = [client(n, "10.0.0.1", f"app{n}") for n in range(SHOWN + 2)]
    text = describe_all(clients)
    assert text.count("app") == SHOWN and text.endswith("and 2 more")


def test_container_addresses_on_one_network_only() -> None:
    rows = [
        {
            "Names": ["/p-api"],
            "NetworkSettings": {
                "Networks": {
                    "p_net": {"IPAddress": "172.18.0.5", "GlobalIPv6Address": "fd00::5"},
                    "other": {"IPAddress": "172.19.0.9"},
                }
            },
        },
        {"Names": ["/p-worker"], "NetworkSettings": {"Networks": {"p_net": {"IPAddress": ""}}}},
        {"Names": ["/p-x"], "NetworkSettings": None},
    ]
    assert container_addresses(rows, "p_net") == {"172.18.0.5": "p-api", "fd00::5": "p-api"}


def test_db_lines_say_whose_connections_were_closed_in_one_line() -> None:
    done = Done("testdb", closed=("api", "api", "worker"))
    lines = db_lines("snapshot", done)
    assert lines == [
        "closed 3 connection(s) of the stack's own services (api, worker) for the copy: "
        "they reconnect",
        "snapshot: done (testdb)",
    ]
    forced = db_lines("restore", Done("testdb", disconnected=(client(9, "10.0.0.1", "psql"),)))
    assert forced[0].startswith("disconnected 1 other client(s) (--force): psql from 10.0.0.1")
    assert db_lines("reset", Done("testdb")) == ["reset: done (testdb)"]
