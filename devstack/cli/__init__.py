"""The command line: parse arguments, run one command, map errors to exit codes.

Exit codes: 0 ok · 1 failure · 2 bad input or usage · 130 interrupted (Ctrl-C) ·
143 stopped by SIGTERM · 129 stopped by SIGHUP (128 + the signal's number, as shells report)."""

from __future__ import annotations

import argparse
import contextlib
import functools
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

    from devstack.converge.engine_protocol import Engine
    from devstack.declare.spec import Stack
    from devstack.usecases import Project, UpOutcome
    from devstack.usecases.snapshots import Done

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

EXAMPLES = {
    "up": "examples:\n  python -m devstack up\n  python -m devstack up --plan\n"
    "  python -m devstack up api --timeout 60",
    "status": "examples:\n  python -m devstack status\n  python -m devstack status --json",
    "down": "examples:\n  python -m devstack down            # keeps the data volumes\n"
    "  python -m devstack down --volumes  # deletes this project's data too\n"
    "  python -m devstack down api        # only the API (and what depends on it)",
    "restart": "examples:\n  python -m devstack restart api\n  python -m devstack restart",
    "logs": "examples:\n  python -m devstack logs\n  python -m devstack logs api -f\n"
    "  python -m devstack logs postgres --tail 50 --since 10m",
    "exec": "examples:\n  python -m devstack exec api -- python -V\n"
    "  python -m devstack exec postgres -- pg_isready",
    "export": "examples:\n  python -m devstack export k8s --api-image "
    "registry.example.com/app/api:1.0 --out k8s/\n"
    "  python -m devstack export k8s --api-image registry.example.com/app/api:1.0 "
    "--namespace staging --replicas 3 --secrets-from-env",
}


def image_option(text: str) -> tuple[str, str]:
    """An argparse type: `SERVICE=REF`."""
    name, sep, ref = text.partition("=")
    if not sep or not name or not ref:
        raise argparse.ArgumentTypeError(f"expected SERVICE=REF (got {text!r})")
    return name, ref


def seconds(text: str) -> float:
    """An argparse type: a number of seconds greater than 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 (got {text})")
    return value


BUILT_IN = ("up", "status", "down", "restart", "logs", "export", "db", "exec")


def _version() -> str:
    """The installed distribution's version (the package's own when not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    from devstack import __version__

    try:
        return version("devstack")
    except PackageNotFoundError:
        return __version__


def build_parser(project_dir: Path | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m devstack",
        description="Bring up the stack your project declares in stack.py (e.g. PostgreSQL, "
        "Redis, migrations, an API and its worker) as one healthy local stack.",
        epilog="exit codes: 0 ok, 1 failure, 2 bad input or usage, 130 interrupted (Ctrl-C), "
        "143 SIGTERM, 129 SIGHUP",
    )
    parser.add_argument(
        "--project-dir", type=Path, default=Path.cwd(), help="repo root (default: .)"
    )
    parser.add_argument("--env-file", type=Path, help="settings file (default: PROJECT_DIR/.env)")
    parser.add_argument("--version", action="version", version=f"devstack {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return commands.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=EXAMPLES.get(name),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    up = command("up", "build, create and start the stack, and wait until it is healthy")
    up.add_argument("services", nargs="*", metavar="SERVICE", help="only these (and their deps)")
    up.add_argument("--timeout", type=seconds, help="seconds to wait for health (default 120)")
    up.add_argument("--plan", action="store_true", help="print what would change, change nothing")
    up.add_argument("--quiet", action="store_true", help="plain lines, no live display")
    up.add_argument(
        "--with",
        dest="groups",
        action="append",
        default=[],
        metavar="GROUP",
        help="also the services of this optional group (repeatable; or DEVSTACK_WITH in .env)",
    )

    status = command("status", "show the stack's containers, health, ports and uptime")
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")

    down = command("down", "stop and remove the stack's containers and network")
    down.add_argument("services", nargs="*", metavar="SERVICE", help="only these (and dependents)")
    down.add_argument("--volumes", action="store_true", help="also delete this project's volumes")
    down.add_argument("--quiet", action="store_true", help="plain lines, no live display")

    restart = command("restart", "restart services (default: all) and wait until they are ready")
    restart.add_argument("services", nargs="*", metavar="SERVICE")
    restart.add_argument("--timeout", type=seconds, help="seconds to wait for health (default 120)")
    restart.add_argument("--quiet", action="store_true", help="plain lines, no live display")

    logs = command("logs", "show the services' logs, interleaved with a service prefix")
    logs.add_argument("services", nargs="*", metavar="SERVICE", help="only these")
    logs.add_argument("-f", "--follow", action="store_true", help="keep following (Ctrl-C ends)")
    logs.add_argument("--tail", type=int, metavar="N", help="only the last N lines of each")
    logs.add_argument("--since", metavar="T", help="e.g. 10m, 2h, 30s or 2026-11-26T08:00:00")

    _add_export(command("export", "render the stack as Kubernetes manifests (kustomize dir)"))

    _add_db(command("db", "snapshots of the application's database: snapshot, restore, list..."))

    exec_ = command("exec", "run a command in a service's container; exits with its code")
    exec_.add_argument("service", metavar="SERVICE")
    exec_.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD...")
    for name, help_text, example in _shortcuts(project_dir or Path.cwd()):
        shortcut = commands.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=f"examples:\n  python -m devstack {example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        shortcut.add_argument("argv", nargs=argparse.REMAINDER, metavar="ARGS...")
    return parser


def _add_db(db: argparse.ArgumentParser) -> None:
    """`db snapshot/restore/list/drop/reset` (see devstack.usecases.databases)."""
    actions = db.add_subparsers(dest="db_action", required=True, metavar="ACTION")
    snap = actions.add_parser("snapshot", help="copy the database into NAME (default: git branch)")
    snap.add_argument("name", nargs="?", metavar="NAME")
    restore = actions.add_parser("restore", help="replace the database by snapshot NAME")
    restore.add_argument("name", metavar="NAME")
    actions.add_parser("list", help="the snapshots, when and from what they were made")
    drop = actions.add_parser("drop", help="delete snapshot NAME")
    drop.add_argument("name", metavar="NAME")
    reset = actions.add_parser("reset", help="drop the database and re-create it from migrations")
    for sub in (snap, restore, reset):
        sub.add_argument("--force", action="store_true", help="disconnect clients (says so)")


def _add_export(export: argparse.ArgumentParser) -> None:
    """`export k8s` and its options (see devstack.k8s.export)."""
    export.add_argument("target", choices=["k8s"], help="k8s: plain YAML + kustomization.yaml")
    export.add_argument("--out", type=Path, default=Path("k8s"), metavar="DIR", help="default k8s")
    export.add_argument("--namespace", metavar="NS", help="default: the project name")
    export.add_argument(
        "--image",
        dest="images",
        action="append",
        default=[],
        type=image_option,
        metavar="SERVICE=REF",
        help="a built service's image in a registry the cluster can pull (repeatable; services "
        "built the same way share it)",
    )
    export.add_argument(
        "--api-image",
        metavar="REF",
        help="the image of every built service, when the stack builds one image",
    )
    export.add_argument(
        "--replicas", type=count, default=1, metavar="N", help="pods per HTTP service (default 1)"
    )
    export.add_argument(
        "--secrets-from-env",
        action="store_true",
        help="fill the Secret from .env (default: "
        "placeholders, and a `kubectl create secret` line to run)",
    )
    export.add_argument(
        "--force", action="store_true", help="overwrite files devstack did not write"
    )
    export.add_argument(
        "--kubectl-image",
        metavar="REF",
        help="the image of the init containers that wait for Jobs (default: a pinned "
        "registry.k8s.io/kubectl)",
    )


def count(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (got {text})")
    return value


@functools.cache
def _declared(project_dir: Path) -> tuple[tuple[tuple[str, str, str], ...], Exception | None]:
    """The exec shortcuts the project's stack declares: (command word, help, example),
    declared with the default settings, once per process; or why the stack file cannot be
    declared (a command word that is not built in then reports that)."""
    from devstack.declare.settings import Settings
    from devstack.declare.stackfile import declare
    from devstack.errors import DevstackError

    try:
        stack = declare(Settings(project_dir=project_dir.resolve(), env_file=project_dir / ".env"))
    except DevstackError as exc:
        return (), exc
    shortcuts = tuple(
        (s.name, s.help, s.example or s.name) for x in stack.services for s in x.shortcuts
    )
    return shortcuts, None


def _shortcuts(project_dir: Path) -> tuple[tuple[str, str, str], ...]:
    return _declared(project_dir)[0]


def _project_dir(argv: list[str]) -> Path:
    """`--project-dir`'s value in `argv` (before parsing: the shortcuts depend on it)."""
    for index, word in enumerate(argv):
        if word == "--project-dir" and index + 1 < len(argv):
            return Path(argv[index + 1])
        if word.startswith("--project-dir="):
            return Path(word.partition("=")[2])
    return Path.cwd()


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Parse; for exec and the shortcuts, everything after the command word (and SERVICE)
    is passed through untouched, options included (`psql -c 'SELECT 1'`)."""
    project_dir = _project_dir(argv)
    parser = build_parser(project_dir)
    word = next(
        (
            w
            for i, w in enumerate(argv)
            if not w.startswith("-")
            and (i == 0 or argv[i - 1] not in {"--project-dir", "--env-file"})
        ),
        None,
    )
    problem = _declared(project_dir)[1]
    if problem is not None and word not in (None, *BUILT_IN):
        raise problem  # e.g. `psql` while the stack file is broken: say why
    args, extra = parser.parse_known_args(argv)
    passthrough = {
        "exec",
        *(name for name, _, _ in _shortcuts(project_dir)),
    }  # args go to the command
    if args.command not in passthrough:
        if extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        return args
    rest = argv[_command_index(argv, args.command) + 1 :]
    if args.command == "exec":
        rest = rest[1:]  # SERVICE
    args.argv = rest[1:] if rest[:1] == ["--"] else rest
    return args


def _command_index(argv: list[str], command: str) -> int:
    """Where the command word stands (not an option's value that happens to equal it)."""
    skip = False
    for index, word in enumerate(argv):
        if not skip and word == command:
            return index
        skip = word in {"--project-dir", "--env-file"}
    return len(argv)


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
        "db": cmd_db,
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
    return EXIT_OK


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
    from devstack.converge.status import PROBED, status_rows
    from devstack.usecases import has_start_interval

    rows = status_rows(outcome.stack, outcome.observed, probed)
    start_interval = has_start_interval(engine) if any(r.health == PROBED for r in rows) else None
    console.print(status_table(outcome.stack.project, rows, None, start_interval))


def _print_links(console: Console, stack: Stack) -> None:
    """One line per service that declares links: its title and URLs."""
    for service in stack.services:
        if service.links and service.ports:
            links = "  ".join(link.format(service.ports[0]) for link in service.links)
            console.print(f"{service.title or service.name:<9} {links}", markup=False)


def cmd_status(args: argparse.Namespace) -> int:
    import json

    from devstack import usecases
    from devstack.converge.status import rows_as_json

    project = _project(args)
    report = usecases.status(project, _connect())
    if args.json:
        print(json.dumps(rows_as_json(report.project, report.rows, report.engine), indent=2))
        return EXIT_OK
    from devstack.cli.ui import make_console, status_table

    console = make_console()
    console.print(status_table(report.project, report.rows, report.engine, report.start_interval))
    if report.observed.empty:
        console.print(f"project {report.project} has nothing running: `python -m devstack up`")
    return EXIT_OK


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


def cmd_restart(args: argparse.Namespace) -> int:
    from devstack import usecases
    from devstack.cli.ui import live_reporter, make_console, plain_reporter, plain_wanted

    project = _project(args)
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


def cmd_export(args: argparse.Namespace) -> int:
    """`export k8s`: everything is checked before the first file is written."""
    from devstack.cli.ui import make_console
    from devstack.k8s import DEFAULT_KUBECTL_IMAGE
    from devstack.k8s.export import ExportOptions, check_out_dir, export_k8s, write_manifests

    project = _project(args)
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
