"""The devstack pytest plugin: tests against the stack's real Postgres and Redis in seconds.

Off unless enabled: `-p devstack`, `--devstack`, or `devstack = true` in the pytest ini.
Then, once per run (in the xdist controller, or the only process without xdist):

- the stack is reused when its containers match the declaration and run; otherwise it is
  brought up (and taken down at the end, unless `--devstack-keep`, only if this run started
  it); a drifted stack is recreated, or refused with `--devstack-no-recreate`;
- a template database migrated once (`alembic upgrade head`), keyed by a hash of the
  migration files, is reused or built (devstack.usecases.databases.ensure_template);
- databases and Redis claims of dead runs are removed (by naming convention only; the
  claims when a test first asks for Redis);
- each worker's database is cloned ahead.

The databases' part runs on its own thread, waiting on Postgres while pytest collects and
xdist starts its workers; the tests start once it is done (xdist's workers learn of it, and of
their DSNs, through a file only the user can read), and its failure stops the run.

Each process (each xdist worker) gets its own clone of the template and its own Redis database
number (or, when all are taken, a key prefix). Fixtures:

- `devstack_dsn`           the worker's database DSN (session)
- `devstack_fresh_dsn`     a new clone for this test alone, dropped after it (function)
- `devstack_pg_connect`    `async with devstack_pg_connect() as conn:` an asyncpg connection
                           to the worker's database (works under any async test runner)
- `devstack_redis`         a redis.Redis on the worker's database, emptied before each test
- `devstack_redis_prefix`  "" with an own database, else the prefix this worker must use
- `devstack_stack`         what the session knows: settings, template, whether it started it
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import tempfile
import threading
import time
import traceback
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from devstack.errors import DevstackError

RUN_KEY = "devstack_run"  # the run id, handed from the controller to xdist workers
LOCK_WAIT_S = 900.0  # how long a run waits for another command (a run, `up`) on the stack


def pytest_addoption(parser: pytest.Parser) -> None:
    """The plugin's options and ini keys."""
    group = parser.getgroup("devstack", "tests against the devstack stack")
    group.addoption("--devstack", action="store_true", help="enable the devstack plugin")
    group.addoption(
        "--devstack-keep",
        action="store_true",
        help="leave a stack this run started running at the end",
    )
    group.addoption(
        "--devstack-no-recreate",
        action="store_true",
        help="stop with what drifted instead of recreating a stack that differs from .env",
    )
    group.addoption("--devstack-env-file", type=Path, help="settings file (default: ROOT/.env)")
    parser.addini("devstack", "enable the devstack plugin", type="bool", default=False)
    parser.addini("devstack_project_dir", "the devstack project (default: the rootdir)")


def enabled(config: pytest.Config) -> bool:
    """Whether this run asked for the plugin."""
    requested = config.getoption("plugins", None) or []
    return bool(
        config.getoption("devstack")
        or config.getini("devstack")
        or any(p in ("devstack", "devstack.pytest_plugin") for p in requested)
    )


@dataclass
class StackSession:
    """What the plugin knows for this run."""

    config: pytest.Config
    run_id: str
    template: str = ""
    started: bool = False
    drifted: tuple[str, ...] = ()
    premade: frozenset[str] = frozenset()  # worker databases the controller made ahead
    preparing: threading.Thread | None = None  # the controller's preparation, on its thread
    done: threading.Event = field(default_factory=threading.Event)  # ...has ended
    dropping: threading.Thread | None = None  # the worker databases' drop, at the end
    failure: DevstackError | None = None  # why the preparation failed
    prepared: bool = False
    dsns: dict[str, str] = field(default_factory=dict, repr=False)  # of `premade`
    loaded: Any = None  # the settings, read when first needed (xdist workers seldom do)
    said: list[str] = field(default_factory=list)  # the preparation's lines, not yet printed

    @property
    def settings(self) -> Any:
        """The project's devstack.declare.settings.Settings."""
        if self.loaded is None:
            self.loaded = _load(self.config)
        return self.loaded

    def ready(self) -> None:
        """Wait until the controller's preparation is done (in this process: its thread;
        in an xdist worker: its word, a file); stop the run with its error if it failed."""
        if not self.prepared:
            if self.preparing is not None:
                self.done.wait()
            elif _is_worker(self.config):
                self._read_word()
            self.prepared = True
        if self.failure is not None:
            pytest.exit(f"devstack: {_failure_text(self.failure)}", returncode=4)

    def _read_word(self) -> None:
        word = _word_file(self.run_id)
        deadline = time.monotonic() + LOCK_WAIT_S + 600  # waiting for the lock, then an `up`
        while not word.exists():
            if time.monotonic() > deadline:
                self.failure = DevstackError("the controller never said the stack was ready")
                return
            time.sleep(0.01)
        said = json.loads(word.read_text())
        self.template, self.dsns = said["template"], said["dsns"]
        self.premade = frozenset(self.dsns)
        if said["error"]:
            self.failure = DevstackError(
                said["error"], hint=said["hint"] or None, details=said["details"] or None
            )


def _failure_text(failure: DevstackError) -> str:
    hint = f" ({failure.hint})" if failure.hint else ""
    details = f"\n{failure.details}" if failure.details else ""
    return f"{failure.message}{hint}{details}"


def _word_file(run_id: str) -> Path:
    """Where the controller tells its xdist workers that the stack is ready (same machine)."""
    return Path(tempfile.gettempdir()) / f"devstack-pytest-{run_id}.json"


def _load(config: pytest.Config) -> Any:
    from devstack.declare.settings import load_settings
    from devstack.engine.endpoint import engine_host

    project_dir = Path(config.getini("devstack_project_dir") or config.rootpath)
    if not project_dir.is_absolute():
        project_dir = config.rootpath / project_dir
    env_file = config.getoption("devstack_env_file")
    return load_settings(project_dir, env_file, engine_host=engine_host())


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def _workers(config: pytest.Config) -> list[str]:
    """The names of the processes that will ask for a database: xdist's workers, or this one."""
    count = config.getoption("numprocesses", None)
    if isinstance(count, int) and count > 0 and config.pluginmanager.has_plugin("dsession"):
        return [f"gw{i}" for i in range(count)]
    return ["main"]


def pytest_configure(config: pytest.Config) -> None:
    """Enabled: set up the run (controller) or read the run id (xdist worker)."""
    if not enabled(config):
        return
    if _is_worker(config):  # the controller checked the settings; a DSN needs none
        config.stash[SESSION] = StackSession(config, config.workerinput[RUN_KEY])  # type: ignore[attr-defined]
        return
    state = StackSession(config, f"{os.getpid()}_{secrets.token_hex(2)}")
    try:
        state.loaded = _load(config)
    except DevstackError as exc:
        raise pytest.UsageError(f"devstack: {exc.message}") from exc
    config.stash[SESSION] = state


SESSION = pytest.StashKey[StackSession]()


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist: every worker uses the controller's run id."""
    session = node.config.stash.get(SESSION, None)
    if session is not None:
        node.workerinput[RUN_KEY] = session.run_id


@pytest.hookimpl(wrapper=True)
def pytest_sessionstart(session: pytest.Session) -> Generator[None, None, None]:
    """Controller only, after the other plugins' session start (xdist has started its
    workers: they boot while the stack is checked): reuse or bring up the stack (here: what
    it prints is seen), then start the databases' preparation (clean dead runs, ensure the
    template, make each worker's database) on its own thread: it waits on Postgres while
    pytest collects and the workers start (see pytest_runtestloop)."""
    yield
    config = session.config
    state = config.stash.get(SESSION, None)
    if state is None or _is_worker(config):
        return
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    workers = _workers(config)

    def say(line: str) -> None:
        if reporter is not None:
            reporter.write_line(f"devstack: {line}")

    try:
        state.started, state.drifted = ensure_stack(
            state.settings, config.getoption("devstack_no_recreate"), say
        )
    except DevstackError as exc:
        raise pytest.UsageError(f"devstack: {_failure_text(exc)}") from exc

    # what the preparation's thread runs is imported here, on the main thread: pytest parses
    # the plugin's modules to rewrite their asserts, and CPython 3.11's parser is not
    # thread-safe (gh-106905: "AST constructor recursion depth mismatch" while pytest
    # collects on the main thread)
    from devstack.usecases import databases, lock, spares, threads  # noqa: F401

    def prepare() -> None:
        try:
            _prepare(state, workers)
        except DevstackError as exc:
            state.failure = exc
        except Exception as exc:  # unforeseen: the run stops with it, not at each test
            state.failure = DevstackError(
                f"preparing the test databases failed: {type(exc).__name__}: {exc}",
                details=traceback.format_exc(),
            )
        finally:
            if workers != ["main"]:
                _tell_workers(state)
            state.done.set()
        if state.failure is None:  # while the tests run
            _clean_up_after_others(state, state.said.append)
            if not state.started or config.getoption("devstack_keep"):
                _make_spares(state, len(workers), state.said.append)

    state.preparing = threading.Thread(target=prepare, name="devstack-prepare", daemon=True)
    state.preparing.start()


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> None:
    """Controller, before the tests (xdist's workers are starting): wait for the databases'
    preparation, say what it did, or stop the run with why it failed."""
    state = session.config.stash.get(SESSION, None)
    if state is None or state.preparing is None:
        return
    state.done.wait()
    _flush(session.config, state)
    if state.failure is not None:
        pytest.exit(f"devstack: {_failure_text(state.failure)}", returncode=4)


def _flush(config: pytest.Config, state: StackSession) -> None:
    """Print what the preparation said, from the main thread with pytest's capture off."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    said, state.said[:] = list(state.said), []
    if not said or reporter is None:
        return
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        for line in said:
            reporter.write_line(f"devstack: {line}")


def _clean_up_after_others(state: StackSession, say: Callable[[str], None]) -> None:
    """Drop the databases of test runs whose process is gone."""
    from devstack.usecases import databases

    try:
        dead = databases.drop_dead_runs(databases.Server.of(state.settings))
    except DevstackError as exc:
        say(f"the databases of dead runs stay: {exc.message}")
        return
    if dead:
        say(f"removed {len(dead)} database(s) of dead runs")


def _make_spares(state: StackSession, count: int, say: Callable[[str], None]) -> None:
    """While the tests run: the next run's worker databases (devstack.usecases.spares)."""
    from devstack.usecases import spares

    try:
        spares.make(state.settings, state.template, count)
    except DevstackError as exc:  # only the next run's speed is at stake
        say(f"no databases made ahead for the next run: {exc.message}")


def _tell_workers(state: StackSession) -> None:
    failure = state.failure
    said = {
        "template": state.template,
        "dsns": state.dsns,
        "error": failure.message if failure else "",
        "hint": (failure.hint or "") if failure else "",
        "details": (failure.details or "") if failure else "",
    }
    word = _word_file(state.run_id)
    partial = word.with_suffix(".partial")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # DSNs
    with os.fdopen(descriptor, "w") as out:
        out.write(json.dumps(said))
    partial.replace(word)  # whole or absent: a worker never reads half of it


def _prepare(state: StackSession, workers: list[str]) -> None:
    """Ensure the template, make each worker's database."""
    from devstack.usecases import databases, spares
    from devstack.usecases.threads import each_at_once

    state.template = databases.ensure_template(state.settings)
    names = [_database_name(state, worker) for worker in workers]
    claimed = spares.claim(state.settings, state.template, names)
    rest = [name for name in names if name not in claimed]
    each_at_once(lambda name: databases.clone(state.settings, name, state.template), rest)
    server = databases.Server.of(state.settings)
    state.dsns = {name: server.dsn(name) for name in names}
    state.premade = frozenset(names)


def _database_name(state: StackSession, worker: str) -> str:
    return f"dst_r{state.run_id}_{worker}"


def ensure_stack(
    settings: Any, no_recreate: bool, say: Callable[[str], None]
) -> tuple[bool, tuple[str, ...]]:
    """Reuse a running stack that matches the declaration; else bring it up. Returns whether
    this run started it (nothing of it ran before) and what had drifted."""
    from devstack import usecases
    from devstack.converge.plan import Kind, plan_up
    from devstack.usecases.lock import project_lock

    project = usecases.project_of(settings)
    engine = usecases.connect()
    stack = usecases.resolve_images(project.stack)

    def waiting(holder: str) -> None:
        say(f"waiting for `{holder}` to finish with the stack {stack.project}")

    # Checked and converged under the project's lock (waiting for it): of two runs finding the
    # stack drifted, the second sees what the first made of it.
    with project_lock(stack.project, "pytest", wait=LOCK_WAIT_S, on_wait=waiting):
        observed = engine.snapshot(stack.project, images=[s.image for s in stack.services])
        plan = plan_up(stack, observed)
        one_shot = {s.name for s in stack.services if s.one_shot}
        drift = tuple(
            f"{op.action.value} {op.kind} {op.name} ({op.cause})"
            for op in plan.changes
            if op.service_name not in one_shot or op.kind is Kind.IMAGE
        )
        running = [name for name, c in observed.containers.items() if c.running]
        if not drift:
            say(f"reusing the running stack {stack.project}")
            return False, ()
        if running and no_recreate:
            raise DevstackError(
                f"the running stack {stack.project} differs from its declaration: "
                + "; ".join(drift),
                hint="run without --devstack-no-recreate to recreate it, or "
                "`python -m devstack up`",
            )
        if running:
            say("the stack drifted, recreating: " + "; ".join(drift))
        else:
            say(f"starting the stack {stack.project}")
        from devstack.cli.ui import make_console, plain_reporter

        usecases.up(project, engine, plain_reporter(make_console(stderr=True)))
    return not running, drift


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """Controller, once the tests and their fixtures are done: drop every worker's database
    (the workers leave them to this) on a thread, while pytest writes its summary."""
    state = session.config.stash.get(SESSION, None)
    if state is None or _is_worker(session.config) or not state.premade:
        return

    def drop() -> None:
        from devstack.usecases import databases

        with contextlib.suppress(DevstackError):
            databases.drop(state.settings, sorted(state.premade))

    state.dropping = threading.Thread(target=drop, name="devstack-drop", daemon=True)
    state.dropping.start()


def pytest_unconfigure(config: pytest.Config) -> None:
    """Controller: wait for its threads, and take down a stack this run started, unless
    --devstack-keep."""
    state = config.stash.get(SESSION, None)
    if state is None or _is_worker(config):
        return
    for thread in (state.preparing, state.dropping):
        if thread is not None:
            thread.join()
    if state.preparing is not None:
        _flush(config, state)
    _word_file(state.run_id).unlink(missing_ok=True)
    if not state.started or config.getoption("devstack_keep"):
        return
    from devstack import usecases
    from devstack.cli.ui import make_console, plain_reporter

    project = usecases.project_of(state.settings)
    with contextlib.suppress(DevstackError):
        usecases.down(project, usecases.connect(), plain_reporter(make_console(stderr=True)))


# --- fixtures ------------------------------------------------------------------------------
def _state(request: pytest.FixtureRequest) -> StackSession:
    state = request.config.stash.get(SESSION, None)
    if state is None:
        raise pytest.UsageError(
            "the devstack fixtures need the plugin enabled: `-p devstack`, `--devstack`, or "
            "`devstack = true` in the pytest ini"
        )
    state.ready()
    return state


def _worker(request: pytest.FixtureRequest) -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


@pytest.fixture(scope="session")
def devstack_stack(request: pytest.FixtureRequest) -> StackSession:
    """The run's stack session: settings, the template's name, whether this run started it."""
    return _state(request)


@pytest.fixture(scope="session")
def devstack_dsn(devstack_stack: StackSession, request: pytest.FixtureRequest) -> Iterator[str]:
    """This worker's own database, cloned from the migrated template; dropped at the end."""
    name = _database_name(devstack_stack, _worker(request))
    if name in devstack_stack.premade:  # made while the workers started; the controller
        yield devstack_stack.dsns[name]  # drops it at the end
        return
    from devstack.usecases import databases  # a worker xdist started later (replacing one)

    dsn = databases.clone(devstack_stack.settings, name, devstack_stack.template)
    yield dsn
    with contextlib.suppress(DevstackError):
        databases.drop(devstack_stack.settings, [name])


@pytest.fixture(scope="session")
def devstack_clone_pool(
    devstack_stack: StackSession, request: pytest.FixtureRequest
) -> Iterator[Any]:
    """This worker's maker of per-test clones on the scratch server (devstack.usecases.scratch:
    made ahead, dropped in the background)."""
    from devstack.usecases import scratch
    from devstack.usecases.clone_pool import ClonePool

    prefix = f"dst_r{devstack_stack.run_id}_{_worker(request)}"

    def ensure() -> Any:  # a scratch server restarted mid-run lost its memory and its port
        return scratch.ensure(devstack_stack.settings, devstack_stack.template)

    pool = ClonePool(ensure(), devstack_stack.template, prefix, renew=ensure)
    yield pool
    pool.close()


@pytest.fixture
def devstack_fresh_dsn(devstack_clone_pool: Any) -> Iterator[str]:
    """A database for this test alone, cloned from the template; dropped after the test."""
    name = devstack_clone_pool.take()
    yield devstack_clone_pool.server.dsn(name)
    devstack_clone_pool.release(name)


@pytest.fixture
def devstack_pg_connect(
    devstack_dsn: str,
) -> Callable[[], AbstractAsyncContextManager[Any]]:
    """`async with devstack_pg_connect() as conn:` an asyncpg connection to the worker's
    database, closed on exit."""

    @contextlib.asynccontextmanager
    async def connect() -> AsyncIterator[Any]:
        import asyncpg

        conn = await asyncpg.connect(devstack_dsn)
        try:
            yield conn
        finally:
            await conn.close()

    return connect


# the Redis fixtures (devstack.pytest_plugin.redis_slots), registered with this plugin
from devstack.pytest_plugin import redis_slots  # noqa: E402

devstack_redis_slot = redis_slots.devstack_redis_slot
devstack_redis_prefix = redis_slots.devstack_redis_prefix
devstack_redis = redis_slots.devstack_redis
