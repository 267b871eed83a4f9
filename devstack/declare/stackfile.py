"""The project's own stack file: `stack.py` at the project's root declares `stack(env)`.

Loading it is the only way devstack learns what a stack holds. Every way it can go wrong (no
file, a file that does not import, a `stack` that raises or returns something else, a bad or
unknown `.env` key, two ports on one host port) is one ConfigError (exit 2) before Docker is
touched, naming the file and, for code, the line."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from devstack.declare.settings import Env, Settings
from devstack.declare.spec import Stack
from devstack.errors import ConfigError, DevstackError

STACK_FILE = "stack.py"
HINT = "see README.md, 'Declaring your stack'"


def stack_path(settings: Settings) -> Path:
    """Where the project's stack file is: `<project dir>/stack.py`."""
    return settings.project_dir / STACK_FILE


def declare(settings: Settings, path: Path | None = None) -> Stack:
    """Run the stack file's `stack(env)`, check what it returns and the settings it read."""
    return declare_with_env(settings, path)[0]


def declare_with_env(settings: Settings, path: Path | None = None) -> tuple[Stack, Env]:
    """`declare`, and the `Env` the stack file read (its declared `.env` keys)."""
    path = path or stack_path(settings)
    module = _load(path)
    function = getattr(module, "stack", None)
    if not callable(function):
        raise ConfigError(f"{path}: defines no function stack(env)", hint=HINT)
    env = Env(settings)
    try:
        stack = function(env)
    except DevstackError:
        raise  # a bad .env value: already one line naming the key
    except Exception as exc:
        raise ConfigError(
            f"{_where(exc, path)}: stack() raised {_one_line(exc)}", hint=HINT
        ) from None
    if not isinstance(stack, Stack):
        raise ConfigError(
            f"{path}: stack() returned {type(stack).__name__}, not a Stack "
            "(end it with `return recipes.stack(env, ...)`)",
            hint=HINT,
        )
    if not stack.services:
        raise ConfigError(
            f"{path}: stack() declares no service",
            hint=f"end it with `return recipes.stack(env, service, ...)`; {HINT}",
        )
    try:  # only the secrets of services turned on matter (a group off is not published)
        examples = stack.active().example_secrets
    except ValueError:  # a service on depends on one off: project_of says so
        examples = stack.example_secrets
    env.check(examples)
    check_ports(stack, settings)
    return stack, env


def _load(path: Path) -> ModuleType:
    if not path.is_file():
        raise ConfigError(
            f"no stack file: {path}",
            hint=f"create {STACK_FILE} in the project (or pass --project-dir); {HINT}",
        )
    name = f"devstack_stackfile_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{path}: cannot be loaded as Python", hint=HINT)
    module = importlib.util.module_from_spec(spec)
    added = str(path.parent) not in sys.path
    if added:  # the stack file may import the project's own modules
        sys.path.insert(0, str(path.parent))
    # no __pycache__/ written into the project (~1 ms to compile a stack file each time)
    as_before, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise ConfigError(f"{exc.filename or path}:{exc.lineno}: {exc.msg}", hint=HINT) from None
    except Exception as exc:
        raise ConfigError(f"{_where(exc, path)}: {_one_line(exc)}", hint=HINT) from None
    finally:
        sys.dont_write_bytecode = as_before
        if added:
            sys.path.remove(str(path.parent))
    return module


def _where(exc: BaseException, path: Path) -> str:
    """`file:line` of the deepest frame in the stack file (else the deepest frame)."""
    import traceback  # only for a stack file that raised

    frames = traceback.extract_tb(exc.__traceback__)
    own = [f for f in frames if Path(f.filename).resolve() == path.resolve()]
    chosen = own or frames
    return f"{chosen[-1].filename}:{chosen[-1].lineno}" if chosen else str(path)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def check_ports(stack: Stack, settings: Settings) -> None:
    """Two published ports on the same host port are a settings error (exit 2)."""
    seen: dict[int, str] = {}
    for port, service in stack.published_ports():
        key = port.setting or f"{service.name}'s port {port.container_port}"
        if port.host_port in seen:
            raise ConfigError(
                f"{settings.env_file} (settings): {key} and {seen[port.host_port]} both use host "
                f"port {port.host_port}",
                hint=f"edit {settings.env_file}; see .env.example",
            )
        seen[port.host_port] = key
