"""`db snapshot/restore/reset` on a running stack: the stack's own services' connections are
closed for the copy (their pools reconnect, no request fails), other clients are named and
refused unless --force (issue 22, item 1)."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import asyncpg

from tests.integration.conftest import Project, poll
from tests.integration.test_pytest_plugin import sql

FAILURES: list[str] = []  # the bodies of failed answers, for the assertion messages


def status_of(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        FAILURES.append(exc.read().decode(errors="replace"))
        return int(exc.code)


def task_round_trip(project: Project) -> str:
    """Queue the worker's `record` task through the API; its final state."""
    body = json.dumps({"message": "after the snapshot"}).encode()
    request = urllib.request.Request(
        f"{project.api_url}/api/v1/tasks", body, {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        url = project.api_url + json.loads(response.read())["url"]

    def final() -> str | None:
        with urllib.request.urlopen(url, timeout=10) as response:
            state = str(json.loads(response.read())["state"])
        return state if state in {"SUCCESS", "FAILURE"} else None

    return str(poll(final, timeout=60))


@contextmanager
def request_loop(url: str) -> Iterator[Counter[int]]:
    """GET `url` back to back on a thread until the block ends; the statuses seen."""
    seen: Counter[int] = Counter()
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                seen[status_of(url)] += 1
            except OSError:
                seen[0] += 1  # no answer at all

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        poll(lambda: seen[200] >= 3, timeout=30)  # the pool holds a connection now
        yield seen
    finally:
        stop.set()
        thread.join(timeout=10)


@contextmanager
def outside_client(project: Project, application: str) -> Iterator[Callable[[], Any]]:
    """A psql-like connection from the host to the application's database; yields a probe
    that runs `SELECT 1` on it (raising once it was disconnected)."""
    loop = asyncio.new_event_loop()
    conn = loop.run_until_complete(
        asyncpg.connect(project.dsn, server_settings={"application_name": application})
    )
    try:
        yield lambda: loop.run_until_complete(conn.fetchval("SELECT 1"))
    finally:
        loop.run_until_complete(conn.close(timeout=2))
        loop.close()


def test_db_commands_close_the_stacks_own_connections_and_refuse_other_clients(
    make_project: Callable[..., Project],
) -> None:
    project = make_project()
    project.run("up", "--quiet")
    ready = f"{project.api_url}/api/v1/ready"
    sql(project, "CREATE TABLE notes (body text); INSERT INTO notes VALUES ('before')")

    # the API's pool is connected, requests keep coming: the snapshot closes the pool's
    # connections (one line says so) and no request fails
    with request_loop(ready) as seen:
        done = project.run("db", "snapshot", "s1")
        after_snapshot = sum(seen.values())
        poll(lambda: sum(seen.values()) >= after_snapshot + 3, timeout=30)
    assert set(seen) == {200}, (seen, FAILURES)
    closed = [line for line in done.stdout.splitlines() if "stack's own" in line]
    assert len(closed) == 1 and "api" in closed[0], done.stdout
    assert status_of(ready) == 200
    assert task_round_trip(project) == "SUCCESS"  # the worker writes its row right after

    # restore and reset: same rule, with requests running through them
    sql(project, "UPDATE notes SET body = 'after'")
    with request_loop(ready) as seen:
        project.run("db", "restore", "s1")
    assert set(seen) == {200}, (seen, FAILURES)
    assert sql(project, "SELECT body FROM notes") == "before"

    # a client that is not the stack's: named, refused; --force disconnects it
    with outside_client(project, "my-ide") as probe:
        assert probe() == 1
        for args in (("snapshot", "s2"), ("restore", "s1"), ("reset",)):
            refused = project.run("db", *args, check=False)
            assert refused.returncode == 1, refused
            assert "my-ide" in refused.stderr and "--force" in refused.stderr, refused.stderr
            assert "127.0.0.1" in refused.stderr or "from " in refused.stderr
            assert probe() == 1  # still connected: nothing was done
        forced = project.run("db", "snapshot", "s2", "--force")
        assert "disconnected" in forced.stdout and "my-ide" in forced.stdout, forced.stdout
        try:
            probe()
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            pass
        else:
            raise AssertionError("the outside client is still connected after --force")
    assert "s2" in project.run("db", "list").stdout

    # reset with the stack's own clients only: no --force needed
    with request_loop(ready) as seen:
        project.run("db", "reset")
    assert set(seen) == {200}, (seen, FAILURES)
    assert sql(project, "SELECT to_regclass('notes') IS NULL")
    assert sql(project, "SELECT to_regclass('task_records') IS NOT NULL")
