"""The report: the table of medians, ratios and floors, and every target's verdict."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.common import summary
from bench.scenarios import FLOORS, SCENARIOS

if TYPE_CHECKING:
    from bench.harness import Bench

# Rows of the table: the scenarios that give one sample per tool and run, and the parts of
# unrelated-tree (measured in the same run with and without the unrelated files).
ROW_TITLES = {
    **{name: title for name, (title, _, _) in SCENARIOS.items()},
    "unrelated-tree:status-clean": "7a. status, clean tree (compose ps)",
    "unrelated-tree:status": "7b. status, 20,000 unrelated files",
    "unrelated-tree:up-clean": "7c. no-op up, clean tree",
    "unrelated-tree:up": "7d. no-op up, 20,000 unrelated files",
    "build-alone": "1d. the same image build alone",
    "independent-first-start": "1e. first start of what needs no build, alone (floor)",
}
TABLE_ORDER = [
    "up-fresh",
    "up-fresh-1s",
    "up-volumes",
    "up-noop",
    "status",
    "status-json",
    "down",
    "down-volumes",
    "up-source-change",
    "unrelated-tree:status-clean",
    "unrelated-tree:status",
    "unrelated-tree:up-clean",
    "unrelated-tree:up",
    "dependency-change",
    "hot-reload",
    "worker-reload",
    "up-fresh-build",
    "build-alone",
    "independent-first-start",
    "up-fresh-35",
    "up-noop-35",
    "status-35",
]


def fmt(values: dict[str, float] | None) -> str:
    """`median min max`, or a dash."""
    if not values:
        return f"{'-':>23}"
    return f"{values['median']:7.3f} {values['min']:7.3f} {values['max']:7.3f}"


def table(bench: Bench) -> str:
    """The results table: every row's medians per tool, the ratio, the floors."""
    stats = {
        scenario: {tool: summary(v) for tool, v in by_tool.items() if v}
        for scenario, by_tool in bench.samples.items()
    }
    floors = {f: stats.get(f, {}).get("floor") for f in FLOORS}
    floor_of = {"up-fresh": "floor", "up-fresh-1s": "floor", "up-volumes": "floor-volumes"}
    lines = [
        f"{'scenario':<64} {'devstack med/min/max (s)':>23}   {'compose med/min/max (s)':>23}"
        f"   {'ds/compose':>10}   {'floor med (s)':>13}",
    ]
    lines.append("-" * len(lines[0]))
    for row in TABLE_ORDER:
        if row not in stats:
            continue
        ds = stats[row].get("devstack") or stats[row].get("floor")
        cp = stats[row].get("compose")
        if row == "up-fresh-1s":
            ds = stats.get("up-fresh", {}).get("devstack")  # devstack at seed settings
        ratio = f"{ds['median'] / cp['median']:10.2f}" if ds and cp else f"{'-':>10}"
        floor = floors.get(floor_of.get(row, ""))
        floor_text = f"{floor['median']:13.3f}" if floor else ""
        title = ROW_TITLES[row].replace("20,000", f"{bench.unrelated_files:,}")
        lines.append(f"{title:<64} {fmt(ds)}   {fmt(cp)}   {ratio}   {floor_text}".rstrip())
    for variant, runs in bench.floors.items():
        lines.append("")
        lines.append(f"{SCENARIOS[variant][0]}, s from the first engine call (med/min/max):")
        keys = [
            key
            for name in bench.service_names
            for key in (f"{name}_start_call", f"{name}_after_start", name)
        ]
        for key in [*keys, "floor"]:
            values = [f[key] for f in runs if key in f]
            if values:
                lines.append(f"  {key:<24} {fmt(summary(values))}")
    for note in bench.notes.get("unrelated_tree", []):
        rebuilt = ", ".join(note["rebuilt"]) or "nothing"
        lines.append("")
        lines.append(
            f"unrelated tree, run {note['run']}: first devstack up with the files "
            f"{note['first_up_s']:.3f}s; rebuilt/recreated: {rebuilt}"
        )
    if "compose_builder" in bench.notes:
        lines.append(f"compose builder: {bench.notes['compose_builder']}")
    if "hot_reload_devstack_command" in bench.notes:
        command = " ".join(bench.notes["hot_reload_devstack_command"])
        lines.append(f"hot reload, devstack's declared command: {command}")
        if plain_reloader(bench):
            lines.append(
                "  (the same reloader as compose.yaml's: until the declaration runs another dev "
                "server, e.g. devstack/programs/devserver.py, row 9 compares uvicorn --reload "
                "with itself)"
            )
    return "\n".join(lines)


# (issue, target, measured (scenario, tool), limit, reference (scenario, tool) or None for an
# absolute limit in seconds). "old": the bench's first targets; "#12": issue 12's.
DS = "devstack"
CP = "compose"
TARGETS: list[tuple[str, str, tuple[str, str], float, tuple[str, str] | None]] = [
    ("old", "up from nothing <= 1.3x floor", ("up-fresh", DS), 1.3, ("floor", "floor")),
    ("old", "up from nothing >= 7x faster than compose (seed settings)", ("up-fresh", DS),
     1 / 7, ("up-fresh", CP)),
    ("old", "up from nothing faster than compose with 1s interval", ("up-fresh", DS), 1.0,
     ("up-fresh-1s", CP)),
    ("old", "up with existing volumes <= 1.3s", ("up-volumes", DS), 1.3, None),
    ("old", "no-op up <= 0.45s", ("up-noop", DS), 0.45, None),
    ("old", "status <= 0.30s", ("status", DS), 0.30, None),
    ("old", "down <= 0.8x compose's", ("down", DS), 0.8, ("down", CP)),
    ("#12", "up from nothing <= 0.6x compose with 1s interval", ("up-fresh", DS), 0.6,
     ("up-fresh-1s", CP)),
    ("#12", "up from nothing <= 1.15x floor (declared order)", ("up-fresh", DS), 1.15,
     ("floor", "floor")),
    ("#12", "up with existing volumes <= 1.15x its floor", ("up-volumes", DS), 1.15,
     ("floor-volumes", "floor")),
    ("#12", "no-op up <= 0.5x compose's no-op up", ("up-noop", DS), 0.5, ("up-noop", CP)),
    ("#12", "status <= 2.5x compose ps", ("status", DS), 2.5, ("status", CP)),
    ("#12", "down <= 1.0x compose down", ("down", DS), 1.0, ("down", CP)),
    ("#12", "down --volumes <= 1.0x compose down -v", ("down-volumes", DS), 1.0,
     ("down-volumes", CP)),
    ("#12", "status, 20,000 unrelated files <= 1.10x clean", ("unrelated-tree:status", DS),
     1.10, ("unrelated-tree:status-clean", DS)),
    ("#12", "no-op up, 20,000 unrelated files <= 1.10x clean", ("unrelated-tree:up", DS),
     1.10, ("unrelated-tree:up-clean", DS)),
    ("#12", "dependency-change rebuild <= 0.5x compose up --build", ("dependency-change", DS),
     0.5, ("dependency-change", CP)),
    ("#12", "hot reload <= 0.5x plain uvicorn --reload", ("hot-reload", DS), 0.5,
     ("hot-reload", CP)),
    ("#23", "status <= 1.5x compose ps", ("status", DS), 1.5, ("status", CP)),
    ("#23", "35 services: up from nothing <= 0.4x compose", ("up-fresh-35", DS), 0.4,
     ("up-fresh-35", CP)),
    ("#23", "35 services: no-op up <= 1.1x the stack's", ("up-noop-35", DS), 1.1,
     ("up-noop", DS)),
    ("#23", "35 services: status <= 1.1x the stack's", ("status-35", DS), 1.1, ("status", DS)),
    ("#23", "moonshot: up from nothing <= 1.15x up with existing volumes", ("up-fresh", DS), 1.15,
     ("up-volumes", DS)),
    # issue 23: disposable services (worker, API) are killed, not stopped gracefully
    ("#23", "down <= 0.5x compose down", ("down", DS), 0.5, ("down", CP)),
    ("#23", "worker reload: save -> a task runs the new code <= 0.5 s", ("worker-reload", DS),
     0.5, None),
]  # fmt: skip


def _result(
    issue: str,
    name: str,
    measured: float | None,
    limit: float | None,
    reference: float | None = None,
    relative: bool = False,
    unit: str = "s",
) -> dict[str, Any]:
    """One target's numbers and verdict: `measured` / `reference` when `relative`, else
    `measured` itself, against `limit` ("info" when there is no limit)."""
    ratio = measured / reference if measured is not None and reference else None
    checked = ratio if relative else measured
    if limit is None:
        verdict = "info"
    elif checked is None:
        verdict = "n/a"
    else:
        verdict = "PASS" if checked <= limit else "FAIL"
    return {
        "issue": issue,
        "target": name,
        "measured": measured,
        "reference": reference,
        "ratio": ratio,
        "limit": limit,
        "unit": unit,
        "verdict": verdict,
    }


def targets(bench: Bench) -> list[dict[str, Any]]:
    """Every target's verdict from the medians (n/a when a side was not measured)."""

    def med(key: tuple[str, str]) -> float | None:
        values = bench.samples.get(key[0], {}).get(key[1])
        return statistics.median(values) if values else None

    results = []
    for issue, name, measured, limit, reference in TARGETS:
        base = med(reference) if reference else None
        results.append(_result(issue, name, med(measured), limit, base, reference is not None))
    notes = bench.notes.get("unrelated_tree", [])
    rebuilds = float(sum(1 for n in notes if n["rebuilt"])) if notes else None
    results.append(
        _result("#12", "20,000 unrelated files: runs that rebuilt <= 0", rebuilds, 0, unit="")
    )
    from bench.scale import overlap_target

    first, overlapped, reachable = overlap_target(bench)
    name = "first up with the build <= 1.1x max(build, first start of the rest) + after"
    results.append(_result("#23", name, first, 1.1, reachable, relative=True))
    name = "first up with the build / max(build, first start of the rest)"
    results.append(_result("info", name, first, None, overlapped, relative=True))
    up, parallel = med(("up-fresh", DS)), med(("floor-parallel", "floor"))
    if up is not None and parallel:
        name = "up from nothing / floor, every service at once"
        results.append(_result("info", name, up, None, parallel, relative=True))
    for result in results:
        result["target"] = result["target"].replace("20,000", f"{bench.unrelated_files:,}")
        if result["target"].startswith("hot reload") and plain_reloader(bench):
            result["verdict"] = "n/a"
            result["why"] = "devstack declares plain uvicorn --reload too: the ratio is noise"
    return results


def plain_reloader(bench: Bench) -> bool:
    """Whether devstack's declared dev server is Compose's plain `uvicorn --reload`
    (then the hot-reload ratio compares a reloader with itself)."""
    command = bench.notes.get("hot_reload_devstack_command") or []
    return bool(command) and Path(command[0]).name == "uvicorn" and "--reload" in command


def targets_text(results: list[dict[str, Any]]) -> str:
    """One line per target: verdict, name, numbers, ratio against its limit."""
    lines = [
        "targets (devstack medians; ratio = devstack / reference; old = the bench's first "
        "targets, #12 = issue 12):"
    ]
    for r in results:
        measured = r["measured"]
        shown = "-" if measured is None else f"{measured:.3f}s"
        if not r["unit"]:
            shown = "-" if measured is None else f"{measured:.0f}"
        if r["reference"] is not None:
            shown += f" / {r['reference']:.3f}s"
        if r["ratio"] is not None:
            shown += f" = {r['ratio']:.2f}"
        limit = "" if r["limit"] is None else f"(limit {r['limit']:.3g})"
        lines.append(
            f"  {r['verdict']:<4} {r['issue']:<4} {r['target']:<60} {shown:<28} {limit}".rstrip()
        )
        if r.get("why"):
            lines.append(f"{'':<12}{r['why']}")
    return "\n".join(lines)
