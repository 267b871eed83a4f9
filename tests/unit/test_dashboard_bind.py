"""The dashboard's bind rules and its page's placeholders (no Docker, no browser)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from devstack.dashboard import Options, check_bind, is_loopback
from devstack.dashboard.server import asset
from devstack.errors import ConfigError
from devstack.usecases import Project

from .helpers import settings
from .test_executor import SEED


def project(tmp_path: Path, example: tuple[str, ...] = ()) -> Project:
    return Project(settings(tmp_path), replace(SEED, example_secrets=example))


def test_loopback_needs_nothing_and_another_address_needs_allow_remote(tmp_path: Path) -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    check_bind(project(tmp_path), Options("127.0.0.1"))
    with pytest.raises(ConfigError, match="beyond this machine") as info:
        check_bind(project(tmp_path), Options("0.0.0.0"))
    assert info.value.hint and "--allow-remote" in info.value.hint
    check_bind(project(tmp_path), Options("0.0.0.0", allow_remote=True))


def test_a_remote_bind_is_refused_while_an_example_password_is_in_use(tmp_path: Path) -> None:
    example = project(tmp_path, ("MINI_DB_PASSWORD",))
    check_bind(example, Options("127.0.0.1"))  # on this machine the example is fine
    with pytest.raises(ConfigError, match="example MINI_DB_PASSWORD"):
        check_bind(example, Options("0.0.0.0", allow_remote=True))


def test_the_page_is_packaged_with_its_placeholders_and_the_now_panel() -> None:
    page = asset("index.html").decode()
    assert "{{TOKEN}}" in page and "{{PROJECT}}" in page
    assert 'id="now"' in page and "now-charts" in page
    assert b"EventSource" in asset("app.js")
    assert "http" not in page and b"http" not in asset("app.css")  # nothing from a CDN
