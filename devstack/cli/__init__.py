"""The command line: parse arguments, run one command, map errors to exit codes.

Exit codes: 0 ok · 1 failure · 2 bad input or usage · 130 interrupted (Ctrl-C) ·
143 stopped by SIGTERM · 129 stopped by SIGHUP (128 + the signal's number, as shells report)."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from typing import TYPE_CHECKING

from devstack.cli.parser import parse_args

if TYPE_CHECKING:
    from rich.console import Console

    from devstack.converge.engine_protocol import Engine
    from devstack.declare.spec import Stack
    from devstack.usecases import Project, UpOutcome
    from devstack.usecases.snapshots import Done

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised in the main thread just where Ctrl-C raises KeyboardInterrupt:
    every command stops the same clean way (the executor cancels its threads, locks and
    terminal modes are released)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _stop_on_signals(received: list[int]) -> None:
    """Turn SIGTERM and SIGHUP into Stopped, appending each signal to `received`. Only the first
    raises (a second one must not cut the clean stop short); a signal the parent set to be
    ignored stays ignored (`nohup`)."""

    def handler(signum: int, _frame: object) -> None:
        received.append(signum)
        if len(received) == 1:
            raise Stopped(signum)

    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) is signal.SIG_DFL:
            signal.signal(signum, handler)


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns its exit code (see the module docstring)."""
    from devstack.errors import DevstackError

    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
    except DevstackError as error:
        from devstack.cli.ui import make_console, print_error

        print_error(make_console(stderr=True), error)
        return error.exit_code

    handler = {
        "up": cmd_up,
        "status": cmd_status,
        "down": cmd_down,
        "restart": cmd_restart,
        "logs": cmd_logs,
        "export": cmd_export,
        "top": cmd_top,
        "db": cmd_db,
        "dashboard": cmd_dashboard,
    }.get(args.command, cmd_exec)
    received: list[int] = []
    try:
        _stop_on_signals(received)
        code = handler(args)
    except DevstackError as error:
        from devstack.cli.ui import make_console, print_error  # rich only when it is needed

        print_error(make_console(stderr=True), error)
        code = error.exit_code
    except KeyboardInterrupt:
        from devstack.cli.ui import make_console

        name = f" ({signal.Signals(received[0]).name})" if received else ""
        with contextlib.suppress(OSError):  # after SIGHUP the terminal may be gone
            make_console(stderr=True).print(
                f"interrupted{name}: nothing is left half-made that the next `up` cannot "
                "converge from",
                markup=False,
            )
        code = EXIT_INTERRUPTED
    except OSError:
        if not received:
            raise
        code = EXIT_INTERRUPTED  # a write to the terminal that hung up, while stopping
    # A command may end itself on the interrupt (`logs -f` returns normally): still 128 + N.
    return 128 + received[0] if received else code


def _project(args: argparse.Namespace) -> Project:
    from devstack.usecases import load_project

    project = load_project(args.project_dir, args.env_file, getattr(args, "groups", ()))
    project.check_services(getattr(args, "services", None) or [])
    return project


def _connect() -> Engine:
    from devstack.usecases import connect

    return connect()


def cmd_up(args: argparse.Namespace) -> int:
    from devstack import usecases
    from devstack.cli.ui import live_reporter, make_console, plain_reporter, plain_wanted

    project = _project(args)
    console = make_console()
    if not project.settings.env_file.exists():
        console.print(
            f"no {project.settings.env_file}: using the documented defaults (.env.example)"
        )
    _say_build_fallbacks(console, project.stack)
    _refuse_nothing_on(project, "bring up")
    engine = _connect()
    if args.plan:
        plan = usecases.plan_for_up(project, engine, args.services)
        console.print(str(plan), markup=False, highlight=False)
        return EXIT_OK
    if plain_wanted(args.quiet):
        width = max(len(name) for name in project.stack.names)
        report = plain_reporter(console, width)
        outcome = usecases.up(project, engine, report, args.services, args.timeout)
    else:
        subjects = project.stack.with_dependencies(args.services or list(project.stack.names))
        with live_reporter(console, subjects) as report:
            outcome = usecases.up(project, engine, report, args.services, args.timeout)
    slowest = max(outcome.result.ready_after.values(), default=0.0)
    if outcome.plan.changes:
        console.print(f"[green]healthy[/] in {slowest:.1f}s · project {outcome.stack.project}")
    else:
        console.print(f"[green]up to date[/]: nothing to change · project {outcome.stack.project}")
    _print_status(console, engine, outcome, frozenset(outcome.result.ready_after))
    _print_links(console, outcome.stack)
    if args.timeline:
        _print_timeline(console, project)
    return EXIT_OK


def _print_timeline(console: Console, project: Project) -> None:
    from devstack.converge.timeline import as_text
    from devstack.usecases import last_timeline

    timeline = last_timeline(project)
    if timeline is None:
        console.print("no timeline recorded yet: the next `up` that starts something records it")
        return
    for line in as_text(timeline):
        console.print(line, markup=False, highlight=False, soft_wrap=True)


def _say_build_fallbacks(console: Console, stack: Stack) -> None:
    """Say once why a build hashes and sends its whole context (inputs not derivable)."""
    from devstack.converge.build import fallback_reason

    for build in {s.build for s in stack.services if s.build}:
        reason = fallback_reason(build)
        if reason:
            console.print(f"note: {reason}", markup=False)


def _print_status(
    console: Console, engine: Engine, outcome: UpOutcome, probed: frozenset[str]
) -> None:
    from devstack.cli.ui import status_table
    from devstack.converge.status import PROBED, status_rows, unwatched
    from devstack.usecases import has_start_interval

    # `up` returned: each service it waited for passed its readiness check just now
    ready = dict.fromkeys(unwatched(outcome.stack, outcome.observed), True)
    rows = status_rows(outcome.stack, outcome.observed, probed, checked=ready)
    start_interval = has_start_interval(engine) if any(r.health == PROBED for r in rows) else None
    if not console.is_terminal:  # rich would print no colours: the same text, faster
        from devstack.cli.plaintable import status_text

        text = status_text(outcome.stack.project, rows, None, start_interval, console.width)
        if text is not None:
            console.file.write(text)
            return
    console.print(status_table(outcome.stack.project, rows, None, start_interval))


def _print_links(console: Console, stack: Stack) -> None:
    """One line per service that declares links: its title and URLs."""
    from devstack.cli.ui import plain_as_is

    direct = None if console.is_terminal else console.file  # as plain_reporter does
    columns = console.width
    for service in stack.services:
        if service.links and service.ports:
            links = "  ".join(link.format(service.ports[0]) for link in service.links)
            line = f"{service.title or service.name:<9} {links}"
            if direct is not None and plain_as_is(line, columns):
                direct.write(f"{line}\n")
            else:
                console.print(line, markup=False)


def cmd_status(args: argparse.Namespace) -> int:
    import json

    from devstack import usecases
    from devstack.converge.status import rows_as_json

    project = _project(args)
    report = usecases.status(project, _connect())
    if args.json:
        print(json.dumps(rows_as_json(report.project, report.rows, report.engine), indent=2))
        return EXIT_OK
    # beside the services: an interrupted run's container, the test databases' scratch server
    one_offs = [
        f"one-off: {name} (`python -m devstack down` removes it)"
        for name in report.observed.one_offs
    ]
    if not sys.stdout.isatty():  # rich would print no colours: the same text without rich
        from devstack.cli.plaintable import status_text

        empty = f"project {report.project} has nothing running: `python -m devstack up`"
        text = status_text(report.project, report.rows, report.engine, report.start_interval, 160)
        if text is not None and len(empty) <= 160:
            extra = [empty] if report.observed.empty else []
            sys.stdout.write(text + "".join(f"{line}\n" for line in extra + one_offs))
            return EXIT_OK
    from devstack.cli.ui import make_console, status_table

    console = make_console()
    console.print(status_table(report.project, report.rows, report.engine, report.start_interval))
    if report.observed.empty:
        console.print(f"project {report.project} has nothing running: `python -m devstack up`")
    for line in one_offs:
        console.print(line, markup=False, highlight=False)
    return EXIT_OK


def cmd_top(args: argparse.Namespace) -> int:
    from devstack.cli import top
    from devstack.cli.ui import make_console, plain_wanted
    from devstack.usecases.metrics import monitor

    return top.run(
        make_console(), monitor(_project(args), _connect()), args, plain_wanted(args.quiet)
    )


def cmd_down(args: argparse.Namespace) -> int:
    from devstack import usecases
    from devstack.cli.ui import make_console, plain_reporter
    from devstack.converge.plan import Action

    project = _project(args)
    console = make_console()
    plan = usecases.down(
        project, _connect(), plain_reporter(console), args.services, volumes=args.volumes
    )
    if not plan.changes:
        console.print(f"nothing to remove for project {project.stack.project}")
    kept = [op.name for op in plan.operations if op.kind == "volume" and op.action is Action.KEEP]
    if kept:
        console.print(f"kept volumes {', '.join(kept)} (`down --volumes` deletes them)")
    return EXIT_OK


def _refuse_nothing_on(project: Project, verb: str) -> None:
    """ConfigError (exit 2) when every declared service is in a group turned off."""
    if project.stack.services:
        return
    from devstack.errors import ConfigError

    groups = sorted({s.group for s in project.whole.services})
    raise ConfigError(
        f"nothing to {verb}: every service is in a group turned off",
        hint=f"turn one on: `up --with {groups[0]}` (or `export k8s --with {groups[0]}`, or "
        f"DEVSTACK_WITH={groups[0]} in .env); groups: {', '.join(groups)}",
    )


def cmd_restart(args: argparse.Namespace) -> int:
    from devstack import usecases
    from devstack.cli.ui import live_reporter, make_console, plain_reporter, plain_wanted

    project = _project(args)
    _refuse_nothing_on(project, "restart")
    console = make_console()
    if plain_wanted(args.quiet):
        usecases.restart(project, _connect(), plain_reporter(console), args.services, args.timeout)
        return EXIT_OK
    subjects = project.stack.start_order(args.services or None)
    with live_reporter(console, subjects) as report:
        usecases.restart(project, _connect(), report, args.services, args.timeout)
    return EXIT_OK


def cmd_logs(args: argparse.Namespace) -> int:
    from devstack.cli.logs import show_logs
    from devstack.cli.ui import make_console

    project = _project(args)
    engine = _connect()
    observed = engine.snapshot(project.stack.project)
    return show_logs(
        engine,
        project.stack,
        observed,
        make_console(),
        services=args.services,
        follow=args.follow,
        tail=args.tail,
        since=args.since,
    )


def cmd_dashboard(args: argparse.Namespace) -> int:
    """Serve the dashboard until Ctrl-C (exit 130)."""
    from devstack.cli.ui import make_console
    from devstack.dashboard import Options, serve

    project = _project(args)
    console = make_console()

    def say(line: str) -> None:
        console.print(line, markup=False, highlight=False, soft_wrap=True)
        console.file.flush()

    options = Options(args.host, args.port, not args.no_open, args.allow_remote)
    try:
        return serve(project, _connect(), options, say)
    except KeyboardInterrupt:
        say("dashboard stopped")
        return EXIT_INTERRUPTED


def cmd_export(args: argparse.Namespace) -> int:
    """`export k8s`: everything is checked before the first file is written."""
    from devstack.cli.ui import make_console
    from devstack.k8s import DEFAULT_KUBECTL_IMAGE
    from devstack.k8s.export import ExportOptions, check_out_dir, export_k8s, write_manifests

    project = _project(args)
    _refuse_nothing_on(project, "export")
    options = ExportOptions(
        out=args.out,
        api_image=args.api_image,
        images=tuple(args.images),
        namespace=args.namespace,
        replicas=args.replicas,
        secrets_from_env=args.secrets_from_env,
        force=args.force,
        kubectl_image=args.kubectl_image or DEFAULT_KUBECTL_IMAGE,
    )
    check_out_dir(options.out, options.force)
    rendered = export_k8s(project, options)
    written = write_manifests(options.out, rendered.files, force=options.force)
    console = make_console()
    lines = [f"wrote {len(written)} files to {options.out}: {' '.join(p.name for p in written)}"]
    lines += [f"note: {note}" for note in rendered.notes]
    if rendered.secret_hint:
        lines += [
            f"next: create the Secret (secret.yaml holds placeholders), then `kubectl apply -k "
            f"{options.out}`; replace each <...> in:",
            rendered.secret_hint,
        ]
    else:
        lines.append(f"next: kubectl apply -k {options.out}")
    for line in lines:
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    return EXIT_OK


def cmd_db(args: argparse.Namespace) -> int:
    from devstack.cli.ui import make_console
    from devstack.usecases import snapshots

    project, console = _project(args), make_console()
    settings = project.settings
    if args.db_action == "list":
        for s in snapshots.list_snapshots(settings):
            size = f"{s.size_bytes / 1e6:.1f} MB"
            console.print(
                f"{s.name:<24} {size:>10}  {s.made_at}  of {s.made_from} {s.git}".rstrip()
            )
        return EXIT_OK
    if args.db_action == "drop":
        done = snapshots.drop_snapshot(settings, args.name)
        console.print(f"drop: done ({done.database})", markup=False)
        return EXIT_OK
    from devstack.usecases import own_addresses

    own = own_addresses(project, _connect())
    if args.db_action == "snapshot":
        name = args.name or snapshots.current_branch(settings.project_dir)
        done = snapshots.snapshot(settings, name, args.force, own)
    elif args.db_action == "restore":
        done = snapshots.restore(settings, args.name, args.force, own)
    else:
        done = snapshots.reset(settings, args.force, own)
    for line in db_lines(args.db_action, done):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    return EXIT_OK


def db_lines(action: str, done: Done) -> list[str]:
    """What a `db` command tells: whose connections it closed, and that it is done."""
    from devstack.usecases.dbclients import describe_all

    lines = []
    if done.closed:
        services = ", ".join(sorted(set(done.closed)))
        lines.append(
            f"closed {len(done.closed)} connection(s) of the stack's own services ({services}) "
            "for the copy: they reconnect"
        )
    if done.disconnected:
        clients = list(done.disconnected)
        lines.append(
            f"disconnected {len(clients)} other client(s) (--force): {describe_all(clients)}"
        )
    return [*lines, f"{action}: done ({done.database})"]


def cmd_exec(args: argparse.Namespace) -> int:
    """`exec SERVICE -- CMD...` and the declared shortcuts (psql, redis-cli, shell...)."""
    from devstack import usecases

    project = _project(args)
    interactive = sys.stdin.isatty()
    if args.command == "exec":
        return usecases.exec_in(project, _connect(), args.service, args.argv, interactive)
    from devstack.cli.ui import make_console, plain_reporter

    def write(chunk: bytes) -> None:
        sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()

    report = plain_reporter(make_console(stderr=True))
    return usecases.run_shortcut(
        project, _connect(), args.command, args.argv, report, write, interactive
    )


if __name__ == "__main__":
    sys.exit(main())
