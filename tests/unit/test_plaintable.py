"""The status table without rich is the text rich prints off a terminal, character for
character, or it declines (None) and rich prints it."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from devstack.cli.plaintable import render, status_text
from devstack.cli.ui import status_table
from devstack.converge.status import PROBED, StatusRow
from devstack.engine.endpoint import Endpoint

PG = "postgresql://devstack:***@127.0.0.1:45795/devstack"


def row(service: str, **kw: object) -> StatusRow:
    values: dict[str, object] = {
        "service": service,
        "container": f"proj-{service}",
        "state": "running",
        "health": "healthy",
        "ports": (),
        "image": f"devstack-local/{service}:1",
        "uptime": "2 minutes",
        "drift": "",
    }
    values.update(kw)
    return StatusRow(**values)  # type: ignore[arg-type]


def with_rich(
    rows: list[StatusRow], engine: Endpoint | None, start: bool | None, width: int
) -> str:
    out = io.StringIO()
    Console(file=out, width=width, highlight=False, no_color=True).print(
        status_table("proj", rows, engine, start)
    )
    return out.getvalue()


CASES = {
    "fits": [row("redis", ports=("redis://127.0.0.1:6379",)), row("api", uptime="About a minute")],
    "folds the widest": [
        row(
            "postgres",
            ports=(PG,),
            uptime="About a minute",
            image="devstack-local/postgres:17-trixie",
        ),
        row("redis", ports=("redis://127.0.0.1:50143",)),
        row("migrate", state="exited", health="", image="devstack/api:e0267bf6e2f57237", uptime=""),
        row("worker-reports", container="a-very-long-project-name-worker-reports", ports=(PG, PG)),
    ],
    "notes": [
        row("api", drift="env AI_AGENTS_LOG_LEVEL changed", health=PROBED),
        row("worker", code_error="SyntaxError: invalid syntax (tasks.py, line 3)"),
    ],
    "missing": [
        row("api", container="", state="missing", health="", uptime="", image="x:<built by up>")
    ],
    "wraps words": [
        row("api", uptime="About a minute", image="an image name with spaces " * 6),
        row("worker", ports=("x " * 70,), image="y" * 90),
    ],
    "many": [row(f"cache{i:02d}", ports=(f"redis://127.0.0.1:{40000 + i}",)) for i in range(30)],
}


@pytest.mark.parametrize("width", [160, 120, 100, 70, 50])
@pytest.mark.parametrize("case", list(CASES))
def test_same_text_as_rich_or_declines(case: str, width: int) -> None:
    rows = CASES[case]
    for engine in (None, Endpoint("env", "tcp://10.0.0.5:2375")):
        for start in (None, True, False):
            text = status_text("proj", rows, engine, start, width)
            if text is not None:
                assert text == with_rich(rows, engine, start, width)


def test_the_usual_tables_are_rendered_without_rich() -> None:
    """The bench's and a user's common tables are not left to rich."""
    for case in ("fits", "folds the widest", "notes", "many", "missing"):
        assert status_text("proj", CASES[case], None, False, 160) is not None, case


def test_declines_what_it_cannot_reproduce() -> None:
    header = ("a", "b")
    assert render("t", "", header, [["[bold]x[/bold]", "y"]], 100, 1) is None  # markup
    assert render("t", "", header, [["世界", "y"]], 100, 1) is None  # wide characters
    assert render("t", "", header, [["x" * 200, "y" * 200]], 12, 1) is None  # cannot shrink


def test_random_tables_match_rich() -> None:
    """Random words, lengths and widths (a fixed seed): every table it renders is rich's."""
    import random

    chance = random.Random(23)
    letters = "abcdefghij/.-_0123456789"

    def text() -> str:
        words = [
            "".join(chance.choice(letters) for _ in range(chance.choice([1, 3, 8, 20, 45])))
            for _ in range(chance.choice([1, 1, 2, 4]))
        ]
        return " ".join(words)

    rendered = 0
    for _ in range(150):
        rows = [
            row(
                text(),
                container=text(),
                ports=tuple(text() for _ in range(chance.choice([0, 1, 2]))),
                image=text(),
                uptime=text(),
                drift=chance.choice(["", text()]),
            )
            for _ in range(chance.choice([1, 2, 5]))
        ]
        width = chance.choice([40, 60, 80, 120, 160])
        found = status_text("proj", rows, None, None, width)
        if found is not None:
            rendered += 1
            assert found == with_rich(rows, None, None, width)
    assert rendered > 60  # the rest: 7 columns of at least 8 do not fit 40 or 60


@pytest.mark.parametrize(
    "line",
    [
        "07:01:02.123 api          healthy  1.2s",
        "07:01:02.123 postgres     waiting  [not ready] connection refused: 127.0.0.1:5432",
        "07:01:02.123 migrate      building  8/19 RUN pip install -e .[service]",
        "x" * 160,
        "x" * 161,
        "a line with an emoji code :smile: in it",
        "trailing space ",
        "wide 世界",
    ],
)
def test_plain_lines_as_rich_prints_them(line: str) -> None:
    """A progress line plain_as_is accepts is exactly what rich prints (markup off)."""
    from devstack.cli.ui import plain_as_is

    out = io.StringIO()
    Console(file=out, width=160, highlight=False, no_color=True).print(line, markup=False)
    if plain_as_is(line, 160):
        assert out.getvalue() == f"{line}\n"
    else:
        assert line in {
            "x" * 161,
            "a line with an emoji code :smile: in it",
            "trailing space ",
            "wide 世界",
        }
