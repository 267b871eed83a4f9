"""The command line's surface: help with examples, usage errors, pass-through arguments."""

from __future__ import annotations

import pytest

from devstack.cli import main, parse_args

COMMANDS = ["up", "status", "down", "restart", "logs", "exec", "psql", "redis-cli", "shell"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and f"python -m devstack {command}" in out


@pytest.mark.parametrize(
    "argv", [["launch"], ["up", "--colour"], ["up", "--timeout", "0"], ["logs", "--tail", "x"]]
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_exec_and_shortcuts_pass_their_options_through() -> None:
    args = parse_args(["--env-file", "psql", "psql", "-c", "SELECT 1"])
    assert (args.command, args.argv) == ("psql", ["-c", "SELECT 1"])
    args = parse_args(["exec", "api", "--", "ls", "-la"])
    assert (args.service, args.argv) == ("api", ["ls", "-la"])
    args = parse_args(["redis-cli", "-n", "1", "ping"])
    assert args.argv == ["-n", "1", "ping"]


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("devstack 0.")


@pytest.mark.parametrize("command", ["up", "down", "restart"])
def test_commands_with_progress_take_quiet(command: str) -> None:
    assert parse_args([command, "--quiet"]).quiet is True
