"""A strict `.env` reader: every line is a comment, blank, or KEY=VALUE; anything else is an error
naming the file and line (python-dotenv would skip it with a warning, and a typo would go unseen).

It reads what editors write: UTF-8 with or without a byte-order mark, CRLF or LF line ends, and
comments after any whitespace (space or tab), as the shells and dotenv tools do.
"""

from __future__ import annotations

import codecs
import re
from pathlib import Path

from devstack.errors import ConfigError

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_EXPORT = re.compile(r"export\s+")
# A `#` that starts a word starts a comment (`A=1<TAB># x`); one inside a word does not (`A=a#b`).
_COMMENT = re.compile(r"\s#")
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def parse_env_text(text: str, source: str = ".env") -> dict[str, str]:
    """Parse .env text. Supports `export `, single/double quotes and trailing `# comments`
    after any whitespace; a leading byte-order mark is ignored."""
    values: dict[str, str] = {}
    for number, raw in enumerate(text.removeprefix("\ufeff").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if export := _EXPORT.match(line):
            line = line[export.end() :]
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not _KEY.fullmatch(key):
            raise ConfigError(
                f"{source} line {number}: expected KEY=VALUE, got {raw.strip()!r}",
                hint="fix or remove that line (comments start with #)",
            )
        values[key] = _unquote(value, source, number)
    return values


def _unquote(value: str, source: str, number: int) -> str:
    """The value after `=`: quoted (kept verbatim) or bare (up to a comment, then stripped)."""
    stripped = value.strip()
    if stripped[:1] in {"'", '"'}:
        quote = stripped[0]
        end = stripped.find(quote, 1)
        if end == -1:
            raise ConfigError(f"{source} line {number}: unterminated {quote} quote")
        rest = stripped[end + 1 :].strip()
        if rest and not rest.startswith("#"):
            raise ConfigError(f"{source} line {number}: unexpected text after the closing quote")
        return stripped[1:end]
    comment = _COMMENT.search(value)
    return (value[: comment.start()] if comment else value).strip()


def read_env_file(path: Path, required: bool = False) -> dict[str, str]:
    """Read and parse `path`. A missing file reads as empty (defaults apply) unless `required`:
    a file the user named must exist."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        if not required:
            return {}
        raise ConfigError(
            f"env file {path} does not exist",
            hint="check the --env-file path (without --env-file, PROJECT_DIR/.env is read "
            "when present)",
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if data.startswith(_UTF16_BOMS) or b"\x00" in data:
        raise ConfigError(
            f"{path} is UTF-16 text, not UTF-8",
            hint="save it as UTF-8 (in Notepad: Save as, Encoding: UTF-8)",
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path} is not UTF-8 text (byte {exc.start})", hint="save it as UTF-8"
        ) from exc
    return parse_env_text(text, str(path))
