"""The code stays lint- and type-clean and layered: ruff, mypy and import-linter's contracts
(pyproject.toml) run as part of the test command; no module grows past ~600 lines."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from .conftest import REPO_ROOT


@pytest.mark.parametrize(
    "command",
    [
        ["ruff", "check", "."],
        ["ruff", "format", "--check", "."],
        [sys.executable, "-m", "mypy"],
        [
            sys.executable,
            "-c",
            "from importlinter.cli import lint_imports_command; lint_imports_command()",
        ],
    ],
    ids=["ruff-check", "ruff-format", "mypy", "import-contracts"],
)
def test_tool_passes(command: list[str]) -> None:
    if command[0] == "ruff" and shutil.which("ruff") is None:
        command = [sys.executable, "-m", *command]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


MAX_LINES = 650  # "small modules (under ~600 lines)", with a little slack


def test_no_module_is_too_long() -> None:
    long = {
        str(path.relative_to(REPO_ROOT)): n
        for folder in ("devstack", "bench")
        for path in (REPO_ROOT / folder).rglob("*.py")
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"split these modules: {long}"
