"""The status table as plain text, character for character what rich prints when the output
is not a terminal (no colours; the heavy-head box, one space of padding, folded cells), without
importing rich (~30 ms of a 0.1 s `status`): rich's column widths (the widest columns
shrink first) and its wrapping (at spaces; a longer word cut). What it does not reproduce
(wide characters, markup or emoji codes, a table that cannot shrink enough) returns None and
rich renders it; tests/unit/test_plaintable.py compares the two."""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from devstack.converge.status import NOT_READY, PROBED, READY, StatusRow

if TYPE_CHECKING:
    from devstack.engine.endpoint import Endpoint

MIN_WIDTH = 6  # every column's min_width (devstack.cli.ui.status_table)
PAD = 2  # one space each side
_RICH_SYNTAX = re.compile(r"\[|:[\w+-]+:")  # markup tags, emoji codes: rich's business


HEADER = ("service", "container", "state", "health", "ports", "image", "uptime")


def status_parts(
    project: str,
    rows: list[StatusRow],
    engine: Endpoint | None = None,
    start_interval: bool | None = None,
) -> tuple[str, str, list[list[str]]]:
    """The status table's title, caption (its notes) and cells, as text."""
    notes = [f"* {row.service}: {row.code_error}" for row in rows if row.code_error]
    notes += [f"* {row.service}: {row.drift}" for row in rows if row.drift]
    if any(row.drift for row in rows):
        notes.append("(`up` applies the current .env; `down` removes orphans)")
    if any(row.health == PROBED for row in rows):
        follows = (
            "within a second (start_interval)"
            if start_interval
            else "within one interval (this engine's API is older than 1.44: no start_interval)"
        )
        notes.append(
            f"{PROBED}: devstack's own check passed; Docker's first health check follows {follows}"
        )
    if any(row.health in (READY, NOT_READY) for row in rows):
        notes.append(
            f"{READY} / {NOT_READY}: devstack's own readiness check, just now "
            "(the service declares no Docker health check)"
        )
    title = f"devstack · {project}"
    if engine and not engine.is_default:
        title += f"\nengine: {engine.describe()}"
    cells = [
        [
            row.service,
            row.container or "-",
            row.state + (" *" if row.drift else ""),
            row.health or "-",
            "\n".join(row.ports) or "-",
            row.image,
            row.uptime or "-",
        ]
        for row in rows
    ]
    return title, "\n".join(notes), cells


def status_text(
    project: str,
    rows: list[StatusRow],
    engine: Endpoint | None,
    start_interval: bool | None,
    width: int,
) -> str | None:
    """The status table as rich prints it without a terminal, or None (then rich does)."""
    title, caption, cells = status_parts(project, rows, engine, start_interval)
    longest = max(len(line) for line in title.split("\n"))
    return render(title, caption, HEADER, cells, width, longest)


def ratio_reduce(
    total: int, ratios: list[int], maximums: list[int], values: list[int]
) -> list[int]:
    """rich._ratio.ratio_reduce."""
    ratios = [ratio if most else 0 for ratio, most in zip(ratios, maximums, strict=True)]
    total_ratio = sum(ratios)
    if not total_ratio:
        return values[:]
    remaining = total
    result = []
    for ratio, most, value in zip(ratios, maximums, values, strict=True):
        if ratio and total_ratio > 0:
            distributed = min(most, round(ratio * remaining / total_ratio))
            result.append(value - distributed)
            remaining -= distributed
            total_ratio -= ratio
        else:
            result.append(value)
    return result


def ratio_distribute(total: int, ratios: list[int]) -> list[int]:
    """rich._ratio.ratio_distribute with minimums of 0."""
    total_ratio = sum(ratios)
    remaining = total
    result = []
    for ratio in ratios:
        share = max(0, -(-(ratio * remaining) // total_ratio)) if total_ratio > 0 else remaining
        result.append(share)
        total_ratio -= ratio
        remaining -= share
    return result


def collapse(widths: list[int], max_width: int) -> list[int]:
    """rich.table.Table._collapse_widths, every column wrapable."""
    total = sum(widths)
    excess = total - max_width
    while total and excess > 0:
        widest = max(widths)
        second = max((w for w in widths if w != widest), default=0)
        ratios = [1 if w == widest else 0 for w in widths]
        difference = widest - second
        if not difference:
            break
        widths = ratio_reduce(excess, ratios, [min(excess, difference)] * len(widths), widths)
        total = sum(widths)
        excess = total - max_width
    return widths


_WORD = re.compile(r"\s*\S+\s*")


def wrap(line: str, width: int) -> list[str]:
    """`line` wrapped at `width` as rich wraps text (rich.text.Text.wrap, divide_line with
    fold): at spaces, a word longer than the width cut into pieces; trailing spaces off."""
    breaks: list[int] = []
    offset = 0
    for match in _WORD.finditer(line):
        word = match.group()
        length = len(word.rstrip())
        if width - offset >= length:
            offset += len(word)
        elif length > width:
            start = match.start()
            pieces = [word[at : at + width] for at in range(0, len(word), width)]
            for index, piece in enumerate(pieces):
                if start:
                    breaks.append(start)
                if index == len(pieces) - 1:
                    offset = len(piece)
                else:
                    start += len(piece)
        else:
            breaks.append(match.start())
            offset = len(word)
    bounds = [0, *breaks, len(line)]
    return [line[a:b].rstrip() for a, b in itertools.pairwise(bounds)] or [""]


def render(
    title: str,
    caption: str,
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    width: int,
    min_width: int,
) -> str | None:
    """The table as rich would print it at `width` columns, or None (see the module)."""
    texts = [title, caption, *header, *(cell for row in rows for cell in row)]
    if not all(t.isascii() or _narrow(t) for t in texts) or any(
        _RICH_SYNTAX.search(t) for t in texts
    ):
        return None
    columns = list(zip(header, *rows, strict=True))
    extra = len(header) + 1  # the borders
    available = width - extra
    lines_of = [[c.split("\n") for c in column] for column in columns]
    maxima = [max(len(line) for cell in col for line in cell) + PAD for col in lines_of]
    widths = [max(m, MIN_WIDTH + PAD) for m in maxima]
    if sum(widths) > available:
        widths = collapse(widths, available)
        if sum(widths) > available:
            return None  # rich's last resort (every column reduced): not reproduced
        widths = [max(min(m, w), MIN_WIDTH + PAD) for m, w in zip(maxima, widths, strict=True)]
        if sum(widths) > available:
            return None  # columns at their minimum are still too wide: rich crops lines
    if sum(widths) < min_width - extra:
        pads = ratio_distribute(min(min_width - extra, available) - sum(widths), widths)
        widths = [w + p for w, p in zip(widths, pads, strict=True)]
    table_width = sum(widths) + extra
    out = _annotation(title, table_width)
    bars = ["━" * w for w in widths]
    out.append("┏" + "┳".join(bars) + "┓")
    out += _row_lines(header, widths, "┃", bottom=True)
    out.append("┡" + "╇".join(bars) + "┩")
    for row in rows:
        out += _row_lines(row, widths, "│")
    out.append("└" + "┴".join("─" * w for w in widths) + "┘")
    if caption:
        out += _annotation(caption, table_width)
    return "".join(f"{line}\n" for line in out)


def _narrow(text: str) -> bool:
    """Only characters one cell wide that rich measures as such (the title's `·`)."""
    return all(ord(c) < 0x300 for c in text)


def _annotation(text: str, width: int) -> list[str]:
    """A title or caption, wrapped, left-justified and padded to the table's width."""
    return [piece.ljust(width) for line in text.split("\n") for piece in wrap(line, width)]


def _row_lines(
    cells: Sequence[str], widths: list[int], bar: str, bottom: bool = False
) -> list[str]:
    """The lines of one row: each cell wrapped to its column, the shorter ones padded below
    (above: `bottom`, as rich aligns the header)."""
    columns = [
        [piece for line in cell.split("\n") for piece in wrap(line, width - PAD)]
        for cell, width in zip(cells, widths, strict=True)
    ]
    height = max(len(c) for c in columns)
    if bottom:
        columns = [[""] * (height - len(c)) + c for c in columns]
    return [
        bar
        + bar.join(
            f" {(c[i] if i < len(c) else ''):<{w - PAD}} "
            for c, w in zip(columns, widths, strict=True)
        )
        + bar
        for i in range(height)
    ]
