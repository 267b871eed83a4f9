"""The command line's grammar: the commands, their options and examples, and the exec
shortcuts the project's stack declares (found before parsing: `--project-dir` names it)."""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

EXAMPLES = {
    "up": "examples:\n  python -m devstack up\n  python -m devstack up --plan\n"
    "  python -m devstack up api --timeout 60\n  python -m devstack up --timeline",
    "status": "examples:\n  python -m devstack status\n  python -m devstack status --json",
    "down": "examples:\n  python -m devstack down            # keeps the data volumes\n"
    "  python -m devstack down --volumes  # deletes this project's data too\n"
    "  python -m devstack down api        # only the API (and what depends on it)",
    "restart": "examples:\n  python -m devstack restart api\n  python -m devstack restart",
    "logs": "examples:\n  python -m devstack logs\n  python -m devstack logs api -f\n"
    "  python -m devstack logs postgres --tail 50 --since 10m",
    "dashboard": "examples:\n  python -m devstack dashboard\n"
    "  python -m devstack dashboard --port 8765 --no-open",
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


BUILT_IN = ("up", "status", "down", "restart", "logs", "export", "db", "exec", "dashboard")


def _version() -> str:
    """The installed distribution's version (the package's own when not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    from devstack import __version__

    try:
        return version("devstack")
    except PackageNotFoundError:
        return __version__


class _Version(argparse.Action):
    """`--version`: the version is looked up only when asked (importlib.metadata costs
    ~10 ms, a fifth of a `status`)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **_: object):
        super().__init__(option_strings, dest, nargs=0, help="show the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        print(f"devstack {_version()}")
        parser.exit()


def build_parser(
    project_dir: Path | None = None, shortcuts: bool = True
) -> argparse.ArgumentParser:
    """The grammar; `shortcuts`: also the stack's exec shortcuts (declaring the stack once
    more), which a built-in command word does not need."""
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
    parser.add_argument("--version", action=_Version)
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
        "--timeline",
        action="store_true",
        help="then print when each service was created, started, released and ready (and "
        "which check passed) in the last `up` that changed something",
    )
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

    top = command("top", "request and task rates, errors and latency now, from Prometheus")
    top.add_argument("--interval", type=seconds, default=1.0, help="seconds between refreshes")
    top.add_argument("--once", action="store_true", help="print one frame and exit")
    top.add_argument("--quiet", action="store_true", help="plain lines, no live display")
    _add_dashboard(command("dashboard", "the stack in your browser: services, logs, timeline"))

    _add_export(command("export", "render the stack as Kubernetes manifests (kustomize dir)"))

    _add_db(command("db", "snapshots of the application's database: snapshot, restore, list..."))

    exec_ = command("exec", "run a command in a service's container; exits with its code")
    exec_.add_argument("service", metavar="SERVICE")
    exec_.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD...")
    for name, help_text, example in _shortcuts(project_dir or Path.cwd()) if shortcuts else ():
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


def _add_dashboard(dashboard: argparse.ArgumentParser) -> None:
    """`dashboard` and its options (see devstack.dashboard)."""
    dashboard.add_argument("--port", type=port_number, default=0, help="default: a free port")
    dashboard.add_argument(
        "--host", default="127.0.0.1", metavar="ADDR", help="default 127.0.0.1 (this machine)"
    )
    dashboard.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a --host beyond this machine (refused while an example password is in use)",
    )
    dashboard.add_argument("--no-open", action="store_true", help="do not open a browser")


def port_number(text: str) -> int:
    """An argparse type: a TCP port (1-65535)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 1 to 65535 (got {text})")
    return value


def _add_export(export: argparse.ArgumentParser) -> None:
    """`export k8s` and its options (see devstack.k8s.export)."""
    export.add_argument("target", choices=["k8s"], help="k8s: plain YAML + kustomization.yaml")
    export.add_argument("--out", type=Path, default=Path("k8s"), metavar="DIR", help="default k8s")
    export.add_argument("--namespace", metavar="NS", help="default: the project name")
    export.add_argument(
        "--with",
        dest="groups",
        action="append",
        default=[],
        metavar="GROUP",
        help="also the services of this optional group, e.g. monitoring (repeatable; or "
        "DEVSTACK_WITH in .env)",
    )
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
    word = next(
        (
            w
            for i, w in enumerate(argv)
            if not w.startswith("-")
            and (i == 0 or argv[i - 1] not in {"--project-dir", "--env-file"})
        ),
        None,
    )
    # a built-in command word needs no shortcuts (unless help lists them all)
    built_in = word in BUILT_IN and not {"-h", "--help"} & set(argv[: argv.index(word)])
    parser = build_parser(project_dir, shortcuts=not built_in)
    problem = None if built_in else _declared(project_dir)[1]
    if problem is not None and word not in (None, *BUILT_IN):
        raise problem  # e.g. `psql` while the stack file is broken: say why
    args, extra = parser.parse_known_args(argv)
    passthrough = {
        "exec",
        *(name for name, _, _ in (() if built_in else _shortcuts(project_dir))),
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
