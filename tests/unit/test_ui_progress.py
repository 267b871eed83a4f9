"""Plain progress lines: one column per subject, wide enough for the longest service name."""

from __future__ import annotations

import io

from rich.console import Console

from devstack.cli.ui import plain_reporter
from devstack.converge.progress import Event


def lines(width: int | None, subjects: list[str]) -> list[str]:
    out = io.StringIO()
    console = Console(file=out, width=200, no_color=True)
    report = plain_reporter(console) if width is None else plain_reporter(console, width)
    for subject in subjects:
        report(Event(subject, "starting"))
    return [line.split(" ", 1)[1] for line in out.getvalue().splitlines()]  # no timestamp


def test_subjects_that_fit_keep_the_usual_column() -> None:
    assert lines(None, ["api", "worker"]) == ["api          starting", "worker       starting"]


def test_a_longer_service_name_widens_the_column() -> None:
    names = ["api", "worker-reports-and-more"]
    shown = lines(len(names[1]), names)
    assert {line.index("starting") for line in shown} == {len(names[1]) + 1}
