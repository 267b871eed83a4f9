"""What piles up is bounded: reuse tags of old reuse keys (devstack.converge.build) and migrated
templates of old migration files (devstack.usecases.databases); the selections are pure."""

from __future__ import annotations

from pathlib import Path

from devstack.converge.build import forget_reuse_tags, stale_reuse_tags
from devstack.declare.spec import Build
from devstack.usecases.databases import stale_templates
from tests.unit.fake_engine import FakeEngine

REPO = "devstack/api-deps"


def tags_of(key: str, when: int) -> dict[str, int]:
    return {
        f"{REPO}:{key}-builder": when,
        f"{REPO}:{key}-builder-0123abcd": when,
        f"{REPO}:{key}-test-deps": when - 1,
    }


def test_reuse_tags_of_all_but_the_newest_keys_are_stale() -> None:
    tags = {**tags_of("aaaa", 100), **tags_of("bbbb", 300), **tags_of("cccc", 200)}
    tags |= tags_of("dddd", 50)  # the current key: kept however old
    stale = stale_reuse_tags(tags, "dddd", keep=3)
    assert stale == sorted(tags_of("aaaa", 100))  # kept: dddd (current), bbbb, cccc
    assert stale_reuse_tags(tags, "dddd", keep=1) == sorted(set(tags) - set(tags_of("dddd", 50)))
    assert stale_reuse_tags(tags_of("aaaa", 1), "aaaa", keep=3) == []


def test_templates_beyond_the_newest_are_stale_unless_current_or_busy() -> None:
    made = {
        "dst_tpl_a": "2026-01-01T00:00:00Z",
        "dst_tpl_b": "2026-01-03T00:00:00Z",
        "dst_tpl_c": "2026-01-02T00:00:00Z",
        "dst_tpl_d": "2026-01-04T00:00:00Z",
        "dst_tpl_old": "",  # no readable comment: oldest
    }
    assert stale_templates(made, "dst_tpl_a", keep=3, busy=set()) == ["dst_tpl_c", "dst_tpl_old"]
    assert stale_templates(made, "dst_tpl_d", keep=2, busy={"dst_tpl_a"}) == [
        "dst_tpl_c",
        "dst_tpl_old",
    ]
    assert stale_templates({"dst_tpl_a": ""}, "dst_tpl_a", keep=1, busy=set()) == []


def test_down_volumes_untags_reuse_tags_no_other_project_needs(tmp_path: Path) -> None:
    engine = FakeEngine()
    build = Build(context=tmp_path, repository="devstack/api")
    engine.images |= {ref: "sha256:x" for ref in tags_of("aaaa", 1)}
    engine.images["other/api-deps:aaaa-builder"] = "sha256:y"  # another repository's

    removed = forget_reuse_tags(engine, [build], "p1")
    assert removed == sorted(tags_of("aaaa", 1))
    assert list(engine.images) == ["other/api-deps:aaaa-builder"]


def test_down_volumes_keeps_reuse_tags_another_project_recorded_itself_as_using(
    tmp_path: Path,
) -> None:
    """Another checkout that is down (no container left) still starts its next build from the
    reuse tags: its record keeps them; each `down --volumes` forgets its own record only."""
    engine = FakeEngine()
    build = Build(context=tmp_path, repository="devstack/api")
    engine.images |= {ref: "sha256:x" for ref in tags_of("aaaa", 1)}
    engine.images |= {"devstack/api-deps-users:p1": "sha256:x", "devstack/api-deps-users:p2": "x"}

    assert forget_reuse_tags(engine, [build], "p1") == ["devstack/api-deps-users:p1"]
    assert set(engine.images) == {*tags_of("aaaa", 1), "devstack/api-deps-users:p2"}
    removed = forget_reuse_tags(engine, [build], "p2")
    assert removed == ["devstack/api-deps-users:p2", *sorted(tags_of("aaaa", 1))]
    assert engine.images == {}
