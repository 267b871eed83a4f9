"""The command line: parse arguments, run one command, map errors to exit codes.

Exit codes: 0 ok · 1 failure · 2 bad input or usage · 130 interrupted (Ctrl-C) ·
143 stopped by SIGTERM · 129 stopped by SIGHUP (128 + the signal's number, as shells report)."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

    from devstack.engine import Engine
    from devstack.observed import Observed
    from devstack.settings import Settings
    from devstack.spec import Stack

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
    "psql": "examples:\n  python -m devstack psql\n  python -m devstack psql -c 'SELECT 1'",
    "redis-cli": "examples:\n  python -m devstack redis-cli\n"
    "  python -m devstack redis-cli -n 1 keys '*'",
    "shell": "examples:\n  python -m devstack shell",
}


def seconds(text: str) -> float:
    """An argparse type: a number of seconds greater than 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 (got {text})")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m devstack",
        description="Bring up PostgreSQL, Redis and the API as one healthy local stack.",
        epilog="exit codes: 0 ok, 1 failure, 2 bad input or usage, 130 interrupted (Ctrl-C), "
        "143 SIGTERM, 129 SIGHUP",
    )
    parser.add_argument(
        "--project-dir", type=Path, default=Path.cwd(), help="repo root (default: .)"
    )
    parser.add_argument("--env-file", type=Path, help="settings file (default: PROJECT_DIR/.env)")
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

    status = command("status", "show the stack's containers, health, ports and uptime")
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")

    down = command("down", "stop and remove the stack's containers and network")
    down.add_argument("services", nargs="*", metavar="SERVICE", help="only these (and dependents)")
    down.add_argument("--volumes", action="store_true", help="also delete this project's volumes")
    down.add_argument("--quiet", action="store_true", help="plain lines, no live display")

    restart = command("restart", "restart services (default: all) and wait until they are ready")
    restart.add_argument("services", nargs="*", metavar="SERVICE")
    restart.add_argument("--timeout", type=seconds, help="seconds to wait for health (default 120)")

    logs = command("logs", "show the services' logs, interleaved with a service prefix")
    logs.add_argument("services", nargs="*", metavar="SERVICE", help="only these")
    logs.add_argument("-f", "--follow", action="store_true", help="keep following (Ctrl-C ends)")
    logs.add_argument("--tail", type=int, metavar="N", help="only the last N lines of each")
    logs.add_argument("--since", metavar="T", help="e.g. 10m, 2h, 30s or 2026-11-26T08:00:00")

    exec_ = command("exec", "run a command in a service's container; exits with its code")
    exec_.add_argument("service", metavar="SERVICE")
    exec_.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD...")
    for name, help_text in (
        ("psql", "psql in the postgres container, connected as the configured user"),
        ("redis-cli", "redis-cli in the redis container"),
        ("shell", "a shell in the API container"),
    ):
        shortcut = command(name, help_text)
        shortcut.add_argument("argv", nargs=argparse.REMAINDER, metavar="ARGS...")
    return parser


PASSTHROUGH = {"exec", "psql", "redis-cli", "shell"}  # their arguments belong to the command run


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Parse; for exec and the shortcuts, everything after the command word (and SERVICE)
    is passed through untouched, options included (`psql -c 'SELECT 1'`)."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command not in PASSTHROUGH:
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
    # pydantic otherwise scans every installed distribution for plugins (~15 ms per command)
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from devstack.errors import DevstackError
    from devstack.ui import make_console, print_error

    handler = {
        "up": cmd_up,
        "status": cmd_status,
        "down": cmd_down,
        "restart": cmd_restart,
        "logs": cmd_logs,
        "exec": cmd_exec,
        "psql": cmd_exec,
        "redis-cli": cmd_exec,
        "shell": cmd_exec,
    }[args.command]
    received: list[int] = []
    try:
        _stop_on_signals(received)
        code = handler(args)
    except DevstackError as error:
        print_error(make_console(stderr=True), error)
        code = error.exit_code
    except KeyboardInterrupt:
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


def _load(args: argparse.Namespace, api_image: bool = True) -> tuple[Settings, Stack]:
    """Settings and stack; `api_image` resolves the API's content-addressed tag (hashing the
    build context), which only commands that compare or create containers need."""
    from devstack.build import image_tag
    from devstack.errors import ConfigError
    from devstack.settings import load_settings
    from devstack.spec import API, build_stack

    settings = load_settings(args.project_dir, args.env_file)
    stack = build_stack(settings)
    api = stack.service(API)
    if api_image and api.build:
        stack = stack.with_image(API, image_tag(api.build))
    known = {s.name for s in stack.services}
    for name in getattr(args, "services", []) or []:
        if name not in known:
            raise ConfigError(f"unknown service {name!r}", hint=f"choose from {sorted(known)}")
    return settings, stack


def _connect() -> Engine:
    from devstack.engine import Engine

    return Engine.connect()


def cmd_up(args: argparse.Namespace) -> int:
    from devstack.executor import Executor, check_ports
    from devstack.lock import project_lock
    from devstack.plan import plan_up
    from devstack.ui import live_reporter, make_console, plain_reporter, plain_wanted

    settings, stack = _load(args)
    timeout = args.timeout or settings.timeout
    console = make_console()
    if not settings.env_file.exists():
        console.print(f"no {settings.env_file}: using the documented defaults (.env.example)")
    engine = _connect()
    with project_lock(stack.project, "up"):
        observed = engine.snapshot(stack.project, images=[s.image for s in stack.services])
        plan = plan_up(stack, observed, args.services)
        if args.plan:
            console.print(str(plan), markup=False, highlight=False)
            return EXIT_OK
        check_ports(engine, stack, plan, observed)
        if plain_wanted(args.quiet):
            result = Executor(engine, stack, observed, plain_reporter(console)).up(plan, timeout)
        else:
            services = [op.service for op in plan.of_kind("container")]
            with live_reporter(console, services) as report:
                result = Executor(engine, stack, observed, report).up(plan, timeout)
    slowest = max(result.ready_after.values(), default=0.0)
    if plan.changes:
        console.print(f"[green]healthy[/] in {slowest:.1f}s · project {stack.project}")
        observed = engine.snapshot(stack.project)
    else:
        console.print(f"[green]up to date[/]: nothing to change · project {stack.project}")
    probed = frozenset(result.ready_after)
    _print_status(console, stack, observed, probed)
    _print_urls(console, stack)
    return EXIT_OK


def _print_status(
    console: Console, stack: Stack, observed: Observed, probed: frozenset[str]
) -> None:
    from devstack.status import status_rows
    from devstack.ui import status_table

    console.print(status_table(stack.project, status_rows(stack, observed, probed)))


def _print_urls(console: Console, stack: Stack) -> None:
    from devstack.spec import API, POSTGRES, REDIS
    from devstack.status import service_url

    def url(name: str) -> str:
        port = stack.service(name).ports[0]
        return service_url(stack.service(name), port.host_ip, port.host_port)

    console.print(f"API       {url(API)}   docs {url(API)}/docs")
    console.print(f"Postgres  {url(POSTGRES)}", markup=False)
    console.print(f"Redis     {url(REDIS)}/0 (cache)  {url(REDIS)}/1 (broker)", markup=False)


def cmd_status(args: argparse.Namespace) -> int:
    import json

    from devstack.status import rows_as_json, status_rows

    _, stack = _load(args)
    engine = _connect()
    observed = engine.snapshot(stack.project)
    rows = status_rows(stack, observed)
    if args.json:
        print(json.dumps(rows_as_json(stack.project, rows, engine.endpoint), indent=2))
        return EXIT_OK
    from devstack.ui import make_console, status_table

    console = make_console()
    console.print(status_table(stack.project, rows, engine.endpoint))
    if observed.empty:
        console.print(f"project {stack.project} has nothing running: `python -m devstack up`")
    return EXIT_OK


def cmd_down(args: argparse.Namespace) -> int:
    from devstack.executor import Executor
    from devstack.lock import project_lock
    from devstack.plan import Action, plan_down
    from devstack.ui import make_console, plain_reporter

    _, stack = _load(args, api_image=False)
    console = make_console()
    engine = _connect()
    with project_lock(stack.project, "down"):
        observed = engine.snapshot(stack.project)
        plan = plan_down(stack, observed, args.volumes, args.services)
        if not plan.changes:
            console.print(f"nothing to remove for project {stack.project}")
        else:
            Executor(engine, stack, observed, plain_reporter(console)).down(plan)
    kept = [op.name for op in plan.operations if op.kind == "volume" and op.action is Action.KEEP]
    if kept:
        console.print(f"kept volumes {', '.join(kept)} (`down --volumes` deletes them)")
    return EXIT_OK


def cmd_restart(args: argparse.Namespace) -> int:
    from devstack.executor import Executor
    from devstack.lock import project_lock
    from devstack.ui import make_console, plain_reporter

    settings, stack = _load(args, api_image=False)
    console = make_console()
    engine = _connect()
    with project_lock(stack.project, "restart"):
        observed = engine.snapshot(stack.project)
        executor_ = Executor(engine, stack, observed, plain_reporter(console))
        executor_.restart(
            args.services or [s.name for s in stack.services], args.timeout or settings.timeout
        )
    return EXIT_OK


def cmd_logs(args: argparse.Namespace) -> int:
    from devstack.logs import show_logs
    from devstack.ui import make_console

    _, stack = _load(args, api_image=False)
    engine = _connect()
    observed = engine.snapshot(stack.project)
    return show_logs(
        engine,
        stack,
        observed,
        make_console(),
        services=args.services,
        follow=args.follow,
        tail=args.tail,
        since=args.since,
    )


def cmd_exec(args: argparse.Namespace) -> int:
    """`exec SERVICE -- CMD...` and its shortcuts psql, redis-cli and shell."""
    from devstack.errors import ConfigError
    from devstack.exec import run_in_container
    from devstack.spec import API, POSTGRES, REDIS

    settings, stack = _load(args, api_image=False)
    argv = args.argv
    if args.command == "psql":
        service = POSTGRES
        argv = ["psql", "-U", settings.postgres_user, "-d", settings.postgres_db, *argv]
    elif args.command == "redis-cli":
        service, argv = REDIS, ["redis-cli", *argv]
    elif args.command == "shell":
        service, argv = API, argv or ["sh"]
    else:
        service = args.service
        if not argv:
            raise ConfigError("exec needs a command: `exec SERVICE -- CMD...`")
    if service not in {s.name for s in stack.services}:
        raise ConfigError(f"unknown service {service!r}")
    engine = _connect()
    container = engine.snapshot(stack.project).containers.get(service)
    if container is None or not container.running:
        from devstack.errors import ServiceFailed

        raise ServiceFailed(
            f"{service} is not running in project {stack.project}",
            hint=f"start it: `python -m devstack up {service}`",
        )
    return run_in_container(engine, container.id, argv, interactive=sys.stdin.isatty())


if __name__ == "__main__":
    sys.exit(main())
