"""The scratch server: a throw-away copy of the stack's Postgres that holds per-test clones.

On the developer's server a per-test clone costs a file copy between two checkpoints, and its
drop another checkpoint, each with its fsyncs (bench/README.md: 9-17 create-and-drop pairs a
second on this machine's disk). The scratch server is a one-off container of the same service
(image, settings, bind mounts: the same roles, locale and init scripts) whose volumes are
memory (tmpfs) and whose command is the capability's throw-away one (Postgres: fsync,
full_page_writes and synchronous_commit off): a clone is a memory copy (60-75 pairs a second).
Nothing in it needs to survive: a crash loses clones that a test run would drop anyway.

- Made by the first test that asks for a per-test database, kept between runs, removed by
  `down` like every one-off. Named `<database container>-scratch-<key>`: <key> hashes its
  configuration, so a change of image or settings replaces it.
- The current migrated template is copied in from the stack's Postgres once (`pg_dump` run in
  the scratch container across the stack's network, from a clone: templates take no
  connections), under the same name; older templates are dropped there as on the stack's
  server (the newest few are kept: a run on older migrations may still be cloning one).
- The clones of dead test runs are dropped there too.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import replace
from pathlib import Path
from typing import Any

from devstack.converge.engine_protocol import Engine
from devstack.declare.capabilities import Database
from devstack.declare.settings import Settings
from devstack.declare.spec import Service
from devstack.usecases.databases import (
    MAINTENANCE_DB,
    RESTART_WAIT_S,
    DatabaseError,
    Server,
    build_template,
    clone_database,
    drop_database,
    drop_dead_runs,
    exists,
    forget_old_templates,
    last_line,
    run_on,
)

SCRATCH = "scratch"  # the one-off name's suffix (before the configuration key)


def scratch_service(service: Service, database: Database) -> Service:
    """`service` as a throw-away server: its volumes in memory, the database's port published
    on one the engine picks, the throw-away command; no health check (the login is waited
    for), no initialisation template, no CPU hold."""
    ports = [p for p in service.ports if p.container_port == database.container_port]
    if not ports:
        raise DatabaseError(f"{service.name} publishes no port {database.container_port}")
    return replace(
        service,
        mounts=tuple(
            replace(m, source="", kind="tmpfs") if m.kind == "volume" else m for m in service.mounts
        ),
        ports=(replace(ports[0], host_port=0),),
        command=database.throwaway_command or service.command,
        healthcheck=None,
        init_template=None,
        held=None,
    )


def ensure(settings: Settings, template: str, lock_dir: Path | None = None) -> Server:
    """The scratch server, made or reused, holding `template` (a migrated template of the
    stack's Postgres). One caller at a time per project, across processes."""
    from devstack.usecases import connect, project_of, resolve_images
    from devstack.usecases.lock import file_lock

    stack = resolve_images(project_of(settings).stack)
    service, database = stack.app_database()
    scratch = scratch_service(service, database)
    suffix = f"{SCRATCH}-{scratch.config_hash()[:12]}"
    name = f"{stack.container_name(service.name)}-{suffix}"
    engine = connect()
    lock_dir = lock_dir or Path(os.environ.get("TMPDIR", "/tmp"))
    with file_lock(lock_dir / f"devstack-{stack.project}-{SCRATCH}.lock"):
        others = f"{stack.container_name(service.name)}-{SCRATCH}-"
        for one_off in engine.snapshot(stack.project).one_offs:
            if one_off.startswith(others) and one_off != name:  # of older settings
                engine.discard_container(one_off)
        if not engine.is_running(name):  # absent, or stopped: its memory is gone
            engine.discard_container(name)
            created = engine.create_container(
                stack, scratch, one_off=suffix, isolated=True, publish=True
            )
            engine.start(created)
        published = dict(engine.state(name).published)
        source = Server.of(settings)  # the stack's Postgres: the scratch differs by its port
        server = replace(source, port=published[database.container_port])
        try:
            made = run_on(server, lambda conn: exists(conn, template), wait=RESTART_WAIT_S)
        except DatabaseError as exc:
            raise DatabaseError(
                f"the scratch Postgres for per-test databases ({name}) does not answer",
                hint="its output is below; `python -m devstack down` removes it",
                details=engine.logs(name),
            ) from exc
        if not made:

            def fill(into: str) -> None:
                _copy(engine, source, service, database, name, template, into)

            build_template(server, template, fill)
            forget_old_templates(server, template)
        drop_dead_runs(server)
    return server


def _copy(
    engine: Engine,
    source: Server,
    service: Service,
    database: Database,
    scratch: str,
    template: str,
    into: str,
) -> None:
    """Copy `template` from the stack's Postgres (`source`, which the scratch container
    reaches as `service` on the stack's network) into the scratch server's database `into`:
    its roles, then the database, dumped from a clone (a template takes no connections)."""
    dump = f"dst_r{os.getpid()}_scratchdump"  # a crash leaves a dead run's database

    async def make(conn: Any) -> None:
        await drop_database(conn, dump)
        await clone_database(conn, dump, template)

    run_on(source, make, wait=RESTART_WAIT_S)
    user = shlex.quote(database.user)
    remote = f"-h {shlex.quote(service.name)} -p {database.container_port} -U {user}"
    script = (
        "set -e; f=$(mktemp); "
        f'pg_dumpall {remote} --roles-only > "$f.roles"; '
        f'pg_dump {remote} -d {shlex.quote(dump)} -f "$f"; '
        f'psql -q -U {user} -d {MAINTENANCE_DB} -f "$f.roles" > /dev/null 2>&1 || true; '
        f'psql -q -v ON_ERROR_STOP=1 -U {user} -d {shlex.quote(into)} -f "$f"; '
        'rm -f "$f" "$f.roles"'
    )
    try:
        code, output = engine.exec_run(
            scratch, ["sh", "-c", script], environment=[f"PGPASSWORD={database.password}"]
        )
    finally:
        run_on(source, lambda conn: drop_database(conn, dump))
    if code != 0:
        raise DatabaseError(
            f"cannot copy {template} into the scratch Postgres: {last_line(output, code)}",
            details=output,
        )
