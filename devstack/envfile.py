"""A strict `.env` reader: every line is a comment, blank, or KEY=VALUE; anything else is an error
naming the file and line (python-dotenv would skip it with a warning, and a typo would go unseen).
"""

from __future__ import annotations

import re
from pathlib import Path

from devstack.errors import ConfigError

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def parse_env_text(text: str, source: str = ".env") -> dict[str, str]:
    """Parse .env text. Supports `export `, single/double quotes and trailing ` # comments`."""
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not _KEY.fullmatch(key):
            raise ConfigError(
                f"{source} line {number}: expected KEY=VALUE, got {raw.strip()!r}",
                hint="fix or remove that line (comments start with #)",
            )
        values[key] = _unquote(value.strip(), source, number)
    return values


def _unquote(value: str, source: str, number: int) -> str:
    if value[:1] in {"'", '"'}:
        quote = value[0]
        end = value.find(quote, 1)
        if end == -1:
            raise ConfigError(f"{source} line {number}: unterminated {quote} quote")
        rest = value[end + 1 :].strip()
        if rest and not rest.startswith("#"):
            raise ConfigError(f"{source} line {number}: unexpected text after the closing quote")
        return value[1:end]
    comment = value.find(" #")
    return value[:comment].rstrip() if comment != -1 else value


def read_env_file(path: Path) -> dict[str, str]:
    """Read and parse `path`; a missing file reads as empty (defaults apply)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    return parse_env_text(text, str(path))
