"""Settings and .env: every bad input is one ConfigError (exit 2) naming the variable and file."""

from __future__ import annotations

from pathlib import Path

import pytest

from devstack.declare.envfile import parse_env_text
from devstack.declare.settings import default_project_name, load_settings
from devstack.errors import ConfigError
from devstack.recipes import EXAMPLE_PASSWORD
from tests.unit.helpers import declare_stack

from .helpers import settings


def error_of(tmp_path: Path, text: str, **environ: str) -> str:
    with pytest.raises(ConfigError) as info:  # settings, then the ports the stack declares
        declare_stack(settings(tmp_path, text, **environ))
    assert info.value.exit_code == 2
    return info.value.message + " | " + (info.value.hint or "")


def test_defaults_without_env_file(tmp_path: Path) -> None:
    s = settings(tmp_path)
    (tmp_path / ".env").unlink()
    s = load_settings(tmp_path, environ={})
    declared = declare_stack(s)
    ports = {p.setting: p.host_port for p, _ in declared.published_ports()}
    assert ports == {
        "DEVSTACK_POSTGRES_PORT": 5433,
        "DEVSTACK_REDIS_PORT": 6379,
        "DEVSTACK_API_PORT": 8000,
    }
    assert s.bind_address == "127.0.0.1" and s.dev_mode
    assert declared.app_database()[1].password == EXAMPLE_PASSWORD
    assert s.health_interval == 10 and s.health_timeout == 5 and s.health_retries == 3


def test_environment_overrides_file(tmp_path: Path) -> None:
    s = settings(tmp_path, "DEVSTACK_API_PORT=8100\n", DEVSTACK_API_PORT="8200")
    ports = {p.setting: p.host_port for p, _ in declare_stack(s).published_ports()}
    assert ports["DEVSTACK_API_PORT"] == 8200


def test_env_file_syntax() -> None:
    text = "# c\n\nexport A=1\nB='x y' # note\nC=\"q\"\nD=plain # trailing\nE=\n"
    assert parse_env_text(text) == {"A": "1", "B": "x y", "C": "q", "D": "plain", "E": ""}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("DEVSTACK_API_PORT=http\n", "DEVSTACK_API_PORT in"),
        ("DEVSTACK_API_PORT=70000\n", "less than or equal to 65535"),
        ("DEVSTACK_REDIS_PORT=0\n", "DEVSTACK_REDIS_PORT"),
        ("DEVSTACK_API_PORT=5433\n", "DEVSTACK_API_PORT and DEVSTACK_POSTGRES_PORT both use"),
        ("POSTGRES_PASSWORD=\n", "POSTGRES_PASSWORD in"),
        ("DEVSTACK_PROJECT=My Project!\n", "not a valid project name"),
        ("this is not a setting\n", "line 2: expected KEY=VALUE"),
        ("DEVSTACK_API_PROT=8000\n", "did you mean DEVSTACK_API_PORT?"),
        ("POSTGRES_PASSWROD=x\n", "did you mean POSTGRES_PASSWORD?"),
        ("DEVSTACK_BIND_ADDRESS=localhost\n", "not an IP address"),
        ("DEVSTACK_TIMEOUT=0\n", "DEVSTACK_TIMEOUT"),
        ("DEVSTACK_TIMEOUT=-5\n", "greater than 0"),
        ("DEVSTACK_HEALTH_RETRIES=0\n", "DEVSTACK_HEALTH_RETRIES"),
        ("DEVSTACK_CA_BUNDLE=/no/such/bundle.pem\n", "no such file"),
        ("DEVSTACK_BIND_ADDRESS=0.0.0.0\n", "example POSTGRES_PASSWORD"),
        ("A='unterminated\n", "unterminated"),
    ],
)
def test_bad_input_names_variable_and_file(tmp_path: Path, text: str, expected: str) -> None:
    message = error_of(tmp_path, text)
    assert expected in message
    assert str(tmp_path / ".env") in message


def test_bad_environment_value_names_the_environment(tmp_path: Path) -> None:
    assert "DEVSTACK_API_PORT in the environment" in error_of(tmp_path, "", DEVSTACK_API_PORT="x")


def test_password_never_echoed(tmp_path: Path) -> None:
    message = error_of(tmp_path, "DEVSTACK_BIND_ADDRESS=0.0.0.0\n")
    assert EXAMPLE_PASSWORD not in message


def test_real_password_allows_public_bind(tmp_path: Path) -> None:
    s = settings(tmp_path, "DEVSTACK_BIND_ADDRESS=0.0.0.0\nPOSTGRES_PASSWORD=s3cret-Long\n")
    assert s.probe_host == "127.0.0.1" and not s.is_loopback


def test_default_project_name_differs_between_same_named_checkouts(tmp_path: Path) -> None:
    a, b = tmp_path / "one" / "app", tmp_path / "two" / "app"
    a.mkdir(parents=True)
    b.mkdir(parents=True)
    name_a, name_b = default_project_name(a), default_project_name(b)
    assert name_a.startswith("app-") and name_b.startswith("app-") and name_a != name_b
    assert default_project_name(tmp_path / "My Repo!").startswith("my-repo-")


def test_each_variable_fills_its_setting(tmp_path: Path) -> None:
    text = (
        "DEVSTACK_PROJECT=shop\nDEVSTACK_DEV_MODE=off\nDEVSTACK_HEALTH_INTERVAL=2.5\n"
        "DEVSTACK_HEALTH_RETRIES= 4\nPOSTGRES_DB=orders\nAI_AGENTS_LOG_LEVEL=debug\n"
    )
    s = settings(tmp_path, text, DEVSTACK_DEV_MODE="TRUE")
    assert s.project_name == "shop" and s.project_dir == tmp_path.resolve()
    assert s.dev_mode is True  # the environment wins, in any case
    declared = declare_stack(s)
    assert (s.health_interval, s.health_retries) == (2.5, 4)
    assert declared.app_database()[1].name == "orders"
    api_env = dict(declared.service("api").environment)
    assert api_env["AI_AGENTS_LOG_LEVEL"] == "debug"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("DEVSTACK_DEV_MODE=maybe\n", "DEVSTACK_DEV_MODE in {env}: should be true or false"),
        ("DEVSTACK_API_PORT=80.5\n", "DEVSTACK_API_PORT in {env}: should be an integer"),
        ("DEVSTACK_HEALTH_INTERVAL=soon\n", "should be a number (got 'soon')"),
        ("POSTGRES_USER=\n", "POSTGRES_USER in {env}: should not be empty"),
    ],
)
def test_values_that_do_not_parse(tmp_path: Path, text: str, expected: str) -> None:
    assert expected.format(env=tmp_path / ".env") in error_of(tmp_path, text)
