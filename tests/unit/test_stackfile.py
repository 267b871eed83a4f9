"""The project's stack file: loading errors are one line (exit 2) before Docker is touched;
settings, groups and `.env.example` derive from what the stack declares; the tool itself
names no service."""

from __future__ import annotations

import ast
import re
import sys
import textwrap
from pathlib import Path

import pytest

from devstack.cli import main
from devstack.declare.settings import CORE, load_settings
from devstack.declare.stackfile import declare, declare_with_env
from devstack.errors import ConfigError
from devstack.usecases import project_of

from .helpers import REPO, settings

NO_ENGINE = "unix:///nonexistent/devstack-test.sock"  # any Docker call would fail (exit 1)
SMALL = """
from devstack import recipes as r

def stack(env: r.Env) -> r.Stack:
    db = r.postgres(env, "db", password=env.secret("DB_PASSWORD", r.EXAMPLE_PASSWORD))
    mail = r.container(
        env, "mail", "mailcatcher:1",
        ports=[r.publish(env, "DEVSTACK_MAIL_PORT", 1080, 1080, url="http://{host}:{port}")],
        ready=r.log_line("listening"), group="tools",
    )
    web = r.container(env, "web", "web:1", depends_on=[db, mail])
    return r.stack(env, db, mail, web)
"""


def project_with(tmp_path: Path, source: str, env_text: str = "") -> Path:
    (tmp_path / "stack.py").write_text(textwrap.dedent(source))
    (tmp_path / ".env").write_text(f"DEVSTACK_PROJECT=demo\n{env_text}")
    return tmp_path


def load_error(tmp_path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        project_of(load_settings(tmp_path, tmp_path / ".env", environ={}))
    assert info.value.exit_code == 2
    return info.value.message


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("def stack(env):\n    return [\n", r"stack\.py:2: '\[' was never closed"),
        ("import no_such_module_here\n", r"stack\.py:1: ModuleNotFoundError: No module named"),
        ("x = 1\n", r"stack\.py: defines no function stack\(env\)"),
        ("def stack(env):\n    return 42\n", r"stack\.py: stack\(\) returned int, not a Stack"),
        (
            "def stack(env):\n    x = 1\n    return {}['db']\n",
            r"stack\.py:3: stack\(\) raised KeyError: 'db'",
        ),
        (
            "from devstack import recipes as r\ndef stack(env):\n"
            "    return r.stack(env, r.container(env, 'a', 'i', depends_on=['b']))\n",
            "a depends on undeclared b",
        ),
        (
            "from devstack import recipes as r\ndef stack(env):\n    return r.stack(env)\n",
            r"stack\.py: stack\(\) declares no service",
        ),
    ],
)
def test_a_broken_stack_file_is_one_line_naming_file_and_line(
    tmp_path: Path, source: str, expected: str
) -> None:
    message = load_error(project_with(tmp_path, source))
    assert re.search(expected, message), message
    assert "\n" not in message


# Mistakes Docker would only report half-way through `up` (or never): refused at the line
# that declares them, before anything is created.
DECLARED = "from devstack import recipes as r\ndef stack(env):\n    return r.stack(env, {})\n"


@pytest.mark.parametrize(
    ("service", "expected"),
    [
        (
            "r.container(env, 'Web App', 'i')",
            r"stack\.py:3: .*service name 'Web App': use lowercase letters, digits, '-' and '_'",
        ),
        ("r.container(env, '', 'i')", r"service name '': use lowercase"),
        (
            "r.container(env, 'web', 'i', command='python3 -m http.server')",
            r"web: command is one string; give its arguments as a list: "
            r"\['python3', '-m', 'http\.server'\]",
        ),
        (
            "r.container(env, 'web', 'i', health='curl -f localhost')",
            r"web: health is one string; give its arguments as a list",
        ),
        (
            "r.container(env, 'web', 'i', environment={'DB HOST': 'db'})",
            r"web: environment variable 'DB HOST': use letters, digits, '_', '\.' and '-'",
        ),
        (
            "r.container(env, 'web', 'i', ports=[r.publish(env, 'WEB_PORT', 8080, 80800)])",
            r"stack\.py:3: .*container port 80800 is not a port \(1-65535\)",
        ),
        (
            "r.container(env, 'web', 'i', ports=[r.publish(env, 'WEB_PORT', 8080, 80)], "
            "ready=r.http(r.publish(env, 'WEB_PORT', 8080, 80), 'ready'))",
            r"HTTP readiness path 'ready' must start with /",
        ),
    ],
)
def test_a_declaration_docker_would_refuse_is_one_line_at_its_line(
    tmp_path: Path, service: str, expected: str
) -> None:
    message = load_error(project_with(tmp_path, DECLARED.format(service)))
    assert re.search(expected, message), message
    assert "\n" not in message


def test_a_missing_stack_file_says_where_it_was_looked_for(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("")
    assert load_error(tmp_path) == f"no stack file: {tmp_path.resolve() / 'stack.py'}"


@pytest.mark.parametrize("command", [["up"], ["status"], ["down"], ["psql"]])
def test_commands_refuse_a_broken_stack_before_touching_docker(
    tmp_path: Path,
    command: list[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DOCKER_HOST", NO_ENGINE)
    project_with(tmp_path, "def stack(env):\n    return None\n")
    code = main(["--project-dir", str(tmp_path), *command])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "returned NoneType, not a Stack" in err


def test_up_with_every_service_in_a_group_turned_off_says_how_to_turn_one_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", NO_ENGINE)
    source = (
        "from devstack import recipes as r\ndef stack(env):\n"
        "    return r.stack(env, r.container(env, 'mail', 'm:1', group='tools'))\n"
    )
    project_with(tmp_path, source)
    for command, verb in (
        (["up"], "bring up"),
        (["up", "--quiet"], "bring up"),
        (["restart"], "restart"),
        (["export", "k8s", "--out", str(tmp_path / "k8s")], "export"),
    ):
        code = main(["--project-dir", str(tmp_path), *command])
        err = capsys.readouterr().err
        assert code == 2, err
        assert f"nothing to {verb}: every service is in a group turned off" in err, err
        assert "`up --with tools`" in err

    from devstack.cli.logs import show_logs
    from devstack.cli.ui import make_console
    from tests.unit.fake_engine import FakeEngine

    stack = project_of(load_settings(tmp_path, tmp_path / ".env", environ={})).stack
    engine = FakeEngine()
    observed = engine.snapshot(stack.project)
    assert show_logs(engine, stack, observed, make_console(), [], False, None, None) == 1
    assert "no service is on" in capsys.readouterr().err


def test_settings_come_from_the_declaration(tmp_path: Path) -> None:
    project_with(tmp_path, SMALL, "DEVSTACK_MAIL_PORT=2080\nDB_PASSWORD=s3cret\n")
    stack, env = declare_with_env(load_settings(tmp_path, tmp_path / ".env", environ={}))
    assert set(env.keys) == {"DB_PASSWORD", "DEVSTACK_MAIL_PORT", "DEVSTACK_POSTGRES_PORT"}
    assert stack.service("mail").ports[0].host_port == 2080
    assert dict(stack.secrets) == {"DB_PASSWORD": "s3cret"}
    assert stack.example_secrets == ()


@pytest.mark.parametrize(
    ("env_text", "expected"),
    [
        ("DEVSTACK_MAIL_PROT=1\n", "unknown setting DEVSTACK_MAIL_PROT"),
        ("DB_PASSWROD=x\n", "unknown setting DB_PASSWROD"),
        ("DEVSTACK_MAIL_PORT=99999\n", "DEVSTACK_MAIL_PORT in"),
        ("DEVSTACK_MAIL_PORT=5432\n", "DEVSTACK_MAIL_PORT and DEVSTACK_POSTGRES_PORT both use"),
        ("DEVSTACK_BIND_ADDRESS=0.0.0.0\n", "with the example DB_PASSWORD"),
    ],
)
def test_declared_keys_are_checked(tmp_path: Path, env_text: str, expected: str) -> None:
    assert expected in load_error(project_with(tmp_path, SMALL, env_text))


def test_an_unknown_key_gets_the_closest_declared_one(tmp_path: Path) -> None:
    project_with(tmp_path, SMALL, "DEVSTACK_MAIL_PROT=1\n")
    with pytest.raises(ConfigError) as info:
        declare(load_settings(tmp_path, tmp_path / ".env", environ={}))
    assert info.value.hint == "did you mean DEVSTACK_MAIL_PORT?"


def test_a_group_is_off_unless_turned_on(tmp_path: Path) -> None:
    project_with(tmp_path, SMALL.replace("depends_on=[db, mail]", "depends_on=[db]"))
    off = project_of(load_settings(tmp_path, tmp_path / ".env", environ={}))
    assert off.stack.names == ("db", "web") and off.whole.names == ("db", "mail", "web")
    with pytest.raises(ConfigError, match="mail is in group 'tools', which is off"):
        off.check_on(["mail"])
    on = project_of(load_settings(tmp_path, tmp_path / ".env", environ={}).with_groups({"tools"}))
    assert on.stack.names == ("db", "mail", "web")
    via_env = load_settings(tmp_path, tmp_path / ".env", environ={"DEVSTACK_WITH": "tools"})
    assert project_of(via_env).stack.names == ("db", "mail", "web")


def test_depending_on_a_service_of_a_group_turned_off_is_refused(tmp_path: Path) -> None:
    message = load_error(project_with(tmp_path, SMALL))
    assert message == (
        "web depends on mail, which is in group 'tools' (off): turn it on with "
        "`up --with tools` or DEVSTACK_WITH=tools"
    )


def test_an_unknown_group_is_refused(tmp_path: Path) -> None:
    project_with(tmp_path, SMALL)
    settings_ = load_settings(tmp_path, tmp_path / ".env", environ={}).with_groups({"tool"})
    with pytest.raises(ConfigError, match="no group 'tool' in this stack"):
        project_of(settings_)


def test_the_projects_stack_declares(tmp_path: Path) -> None:
    """The repository's own stack.py loads (the unit tests pin the seed's: seed_stack.py)."""
    stack = declare(settings(tmp_path), REPO / "stack.py")
    assert {"postgres", "redis", "migrate", "api", "worker"} <= set(stack.names)


def test_env_example_documents_every_declared_key(tmp_path: Path) -> None:
    _, env = declare_with_env(settings(tmp_path), REPO / "stack.py")  # the project's own
    example = (REPO / ".env.example").read_text()
    documented = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]*)=", example, re.M))
    missing = sorted({*env.keys, *CORE} - documented)
    assert not missing, f".env.example does not document {missing}"
    for key in env.keys.values():  # with the default the stack declares
        assert re.search(rf"^#? ?{key.name}={re.escape(key.default)}$", example, re.M), key


# Literals in devstack/ equal to a name only a stack file may use, with why they are not one.
SERVICE_NAMES = {"postgres", "redis", "api", "worker", "migrate"}
NOT_SERVICE_NAMES = {
    ("databases.py", "postgres"): "Postgres' own maintenance database",
    ("render.py", "worker"): "a Kubernetes component kind (a Deployment without a Service)",
}


def test_the_tool_names_no_service() -> None:
    """Outside the recipes (which name the kinds of service they make), no literal is a
    service name; the recipes take every service's name from the stack file."""
    found = []
    recipes = REPO / "devstack" / "recipes"
    for path in sorted((REPO / "devstack").rglob("*.py")):
        if path.is_relative_to(recipes):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            named = isinstance(node, ast.Constant) and node.value in SERVICE_NAMES
            if named and (path.name, node.value) not in NOT_SERVICE_NAMES:
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: {node.value!r}")
    assert not found, "the stack file names services, not the tool: " + ", ".join(found)


def test_recipes_take_the_service_name_from_the_stack_file() -> None:
    import inspect

    from devstack import recipes

    for name in recipes.__all__:
        item = getattr(recipes, name)
        if inspect.isfunction(item) and "name" in inspect.signature(item).parameters:
            parameter = inspect.signature(item).parameters["name"]
            if name != "tests_in_stack":  # a command word, not a service
                assert parameter.default is inspect.Parameter.empty, name


def test_the_tests_shortcut_in_production_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", NO_ENGINE)
    settings(tmp_path, "DEVSTACK_DEV_MODE=false\n")  # the repository's stack.py and a .env
    code = main(["--project-dir", str(tmp_path), "test"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "runs in dev mode only: the production image has no pytest" in err
    assert "DEVSTACK_DEV_MODE=true" in err


def test_a_bad_value_from_the_environment_says_to_fix_the_environment(tmp_path: Path) -> None:
    project_with(tmp_path, SMALL)
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path, tmp_path / ".env", environ={"DEVSTACK_DEV_MODE": "maybe"})
    assert info.value.message.startswith("DEVSTACK_DEV_MODE in the environment")
    assert info.value.hint is not None and "your environment" in info.value.hint
    assert "edit" not in info.value.hint


def test_declaring_writes_no_bytecode_into_the_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Python would cache the compiled stack file as __pycache__/stack.*.pyc beside it: a new
    directory in every project (many are not Python projects) on the first command."""
    monkeypatch.setattr("sys.dont_write_bytecode", False)  # as without PYTHONDONTWRITEBYTECODE
    project_with(tmp_path, SMALL)
    declare(load_settings(tmp_path, tmp_path / ".env", environ={}))
    assert sorted(p.name for p in tmp_path.iterdir()) == [".env", "stack.py"]
    assert sys.dont_write_bytecode is False  # the process' own setting is left as it was
