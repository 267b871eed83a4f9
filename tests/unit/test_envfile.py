"""The .env reader against what editors and shells produce (issue 10, items 6-8): a BOM,
tabs, comments after any whitespace; and an --env-file the user named that is not there."""

from __future__ import annotations

from pathlib import Path

import pytest

from devstack.declare.envfile import parse_env_text, read_env_file
from devstack.declare.settings import load_settings
from devstack.errors import ConfigError


# --- item 6: text saved by Windows editors ----------------------------------------------
def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_bytes(b"\xef\xbb\xbf# devstack settings\r\nDEVSTACK_API_PORT=18080\r\n")
    assert read_env_file(path) == {"DEVSTACK_API_PORT": "18080"}


def test_utf8_bom_before_a_setting_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_bytes(b"\xef\xbb\xbfDEVSTACK_API_PORT=18080\n")
    assert read_env_file(path) == {"DEVSTACK_API_PORT": "18080"}


def test_bom_in_decoded_text_is_accepted() -> None:
    assert parse_env_text("\ufeffA=1\n") == {"A": "1"}


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_utf16_file_is_one_clear_error(tmp_path: Path, encoding: str) -> None:
    """Notepad's "Unicode": named as such, with the fix, not a decode error or a bad line."""
    path = tmp_path / ".env"
    text = "A=1\n"
    bom = {"utf-16-le": "\ufeff", "utf-16-be": "\ufeff"}.get(encoding, "")
    path.write_bytes((bom + text).encode(encoding))
    with pytest.raises(ConfigError) as info:
        read_env_file(path)
    assert info.value.exit_code == 2
    assert str(path) in info.value.message and "UTF-16" in info.value.message
    assert info.value.hint and "UTF-8" in info.value.hint


def test_invalid_utf8_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_bytes(b"A=caf\xe9\n")  # Latin-1
    with pytest.raises(ConfigError) as info:
        read_env_file(path)
    assert str(path) in info.value.message and "UTF-8" in info.value.message


# --- item 7: whitespace before a comment, whatever whitespace --------------------------------
@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("A=18080\t# mine", "18080"),
        ("A=18080 # mine", "18080"),
        ("A=18080 \t # mine", "18080"),
        ("A=18080\t#", "18080"),
        ("A= # only a comment", ""),
        ("A=\t# only a comment", ""),
        ("A=#not-a-comment", "#not-a-comment"),  # as in the shells: `#` inside a word
        ("A=a#b", "a#b"),
        ("A=x y\t# two words", "x y"),
        ("A='quoted # kept'\t# comment", "quoted # kept"),
        ('A="quoted"\t# comment', "quoted"),
        ("A=1\t", "1"),
        ("export\tA=1", "1"),
        ("export  A=1 # c", "1"),
        ("\tA=1", "1"),
        ("A\t=\t1", "1"),
    ],
)
def test_any_whitespace_before_hash_starts_a_comment(line: str, expected: str) -> None:
    assert parse_env_text(line + "\n") == {"A": expected}


def test_text_after_a_closing_quote_still_refused() -> None:
    with pytest.raises(ConfigError, match="after the closing quote"):
        parse_env_text("A='x'\ty\n")


# --- item 8: an --env-file the user named must exist ----------------------------------------
def test_explicit_env_file_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "staging.env"
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path, missing, environ={})
    assert info.value.exit_code == 2
    assert str(missing) in info.value.message
    assert info.value.hint and "--env-file" in info.value.hint


def test_explicit_env_file_that_is_a_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path, tmp_path, environ={})
    assert str(tmp_path) in info.value.message


def test_default_env_file_may_be_absent(tmp_path: Path) -> None:
    settings = load_settings(tmp_path, environ={})
    assert settings.env_file == tmp_path / ".env" and settings.env_file.name == ".env"


def test_read_env_file_optional_and_required(tmp_path: Path) -> None:
    assert read_env_file(tmp_path / "absent") == {}
    with pytest.raises(ConfigError, match="does not exist"):
        read_env_file(tmp_path / "absent", required=True)
