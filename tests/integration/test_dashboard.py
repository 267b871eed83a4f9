"""The dashboard in a real browser (Debian's chromium + chromium-driver, driven by selenium):
the page shows every service, a `docker kill` turns its row bad within a second, the log
filter works, restart from the page restarts the container, nothing answers without the token.
Its own small stack (tests/integration/dashboard_stack): own project name, free ports."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.conftest import IN_CI
from tests.integration.conftest import (
    TEST_PREFIX,
    Project,
    free_port,
    inherited_settings,
    poll,
)

pytestmark = pytest.mark.integration

STACK_DIR = Path(__file__).with_name("dashboard_stack")
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def dashboard_project(base: Path, client: docker.DockerClient, **settings: str) -> Project:
    project_dir = base / "stack"
    shutil.copytree(STACK_DIR, project_dir)
    name = f"{TEST_PREFIX}{os.getpid()}-{secrets.token_hex(3)}"
    project = Project(name, base / ".env", project_dir, client)
    image = inherited_settings().get("DEVSTACK_PYTHON_IMAGE")
    project.write_env(
        DEVSTACK_PROJECT=name,
        DASH_WEB_PORT=str(free_port()),
        DEVSTACK_HEALTH_INTERVAL="1",
        **({"DEVSTACK_PYTHON_IMAGE": image} if image else {}),
        **settings,
    )
    return project


class Dashboard:
    """A running `python -m devstack dashboard --no-open` and the URL it printed."""

    def __init__(self, project: Project, *extra: str):
        command, env = project.command("dashboard", "--no-open", *extra)
        self.process = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # blocks until it prints (or exits)
        if "http://" not in line:
            self.process.kill()
            raise AssertionError(f"no URL printed: {line!r}{self.process.stdout.read()}")
        self.url = line.split()[-1]
        self.base, _, self.token = self.url.partition("/?token=")

    def stop(self) -> int:
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=15)


def request(url: str, method: str = "GET", **headers: str) -> tuple[int, str]:
    body = b"{}" if method == "POST" else None
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless chromium through chromium-driver; under CI a missing one is a failure."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing.append("selenium (pip install -e '.[test]')")
    if missing:
        message = (
            f"the browser tests need {', '.join(missing)} (scripts/bootstrap.sh installs them)"
        )
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1400,1000")
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def running(
    tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient
) -> Iterator[tuple[Project, Dashboard]]:
    project = dashboard_project(tmp_path_factory.mktemp("dash"), docker_client)
    dashboard = None
    try:
        project.run("up", "--quiet", "--timeout", "120")
        dashboard = Dashboard(project)
        yield project, dashboard
        assert dashboard.stop() == 130  # Ctrl-C
        dashboard = None
    finally:
        if dashboard is not None:
            dashboard.process.kill()
        project.remove_everything()


def rows(driver: Any) -> dict[str, dict[str, str]]:
    """service -> the row's data attributes and text, read in the page."""
    found: dict[str, dict[str, str]] = driver.execute_script(
        """return Object.fromEntries([...document.querySelectorAll('#services tbody tr')]
        .map(r => [r.dataset.service, {ok: r.dataset.ok, state: r.dataset.state,
                                       text: r.innerText}]));"""
    )
    return found


def open_page(driver: Any, dashboard: Dashboard) -> None:
    driver.get(dashboard.url)
    poll(
        lambda: driver.execute_script(
            "return document.querySelectorAll('#services tbody tr').length"
        ),
        timeout=15,
    )


def test_the_page_shows_every_service_its_health_message_and_the_timeline(
    running: tuple[Project, Dashboard], browser: Any
) -> None:
    project, dashboard = running
    open_page(browser, dashboard)
    assert set(rows(browser)) == set(project.services()) == {"web", "chatty"}
    # web's Docker health check output, once its first check ran (interval 1 s)
    poll(lambda: "HTTP 200" in rows(browser)["web"]["text"], timeout=15)
    assert rows(browser)["web"]["ok"] == "true"
    timeline = browser.execute_script(
        "return [...document.querySelectorAll('#timeline .row')].map(r => r.dataset.service)"
    )
    assert set(timeline) == {"web", "chatty"}
    assert "log line /chatty started/" in browser.find_element("id", "timeline").text
    # no Prometheus in this stack: the "Now" panel says why it is empty
    placeholder = browser.find_element("id", "now-placeholder")
    poll(lambda: "Prometheus" in placeholder.text or "metrics" in placeholder.text, timeout=10)


def test_nothing_answers_without_the_token_and_actions_need_token_and_origin(
    running: tuple[Project, Dashboard],
) -> None:
    _, dashboard = running
    base, token = dashboard.base, dashboard.token
    for path in ("/", "/app.js", "/events", "/api/state"):
        assert request(base + path)[0] == 403, path
        assert request(f"{base}{path}?token=wrong-{token}")[0] == 403, path
    status, body = request(f"{base}/api/state?token={token}")
    assert status == 200 and json.loads(body)["project"] == running[0].name
    json_type = {"Content-Type": "application/json"}
    restart = f"{base}/api/restart"
    # the token in the URL is not enough for an action; a foreign Origin is refused
    assert request(f"{restart}?token={token}", "POST", Origin=base, **json_type)[0] == 403
    evil = {"X-Devstack-Token": token, "Origin": "http://evil.example", **json_type}
    assert request(restart, "POST", **evil)[0] == 403
    assert request(restart, "POST", **{"X-Devstack-Token": token, **json_type})[0] == 403
    # a rebinding Host is refused even with the token
    assert request(f"{base}/api/state?token={token}", Host="evil.example")[0] == 403
    status, _ = request(restart, "POST", **{"X-Devstack-Token": token, "Origin": base, **json_type})
    assert status == 409  # got through the checks: no service named


def test_docker_kill_turns_the_row_bad_within_a_second_and_restart_from_the_page_restarts_it(
    running: tuple[Project, Dashboard], browser: Any
) -> None:
    project, dashboard = running
    open_page(browser, dashboard)
    poll(lambda: rows(browser)["web"]["ok"] == "true", timeout=15)
    container = project.container("web")
    killed = time.monotonic()
    container.kill()
    poll(lambda: rows(browser)["web"]["ok"] == "false", timeout=5, interval=0.01)
    delay = time.monotonic() - killed
    assert delay < 1.0, f"the row changed {delay:.2f}s after docker kill"
    assert rows(browser)["web"]["state"] == "exited"

    button = browser.find_element("css selector", "tr[data-service='web'] button.restart")
    button.click()
    poll(lambda: project.container("web").status == "running", timeout=30)
    poll(lambda: rows(browser)["web"]["ok"] == "true", timeout=30)


def test_a_rows_buttons_stay_the_same_elements_across_state_updates(
    running: tuple[Project, Dashboard], browser: Any
) -> None:
    """A state update (the uptime moves on, a health check ran) must not replace the row's
    buttons: a click whose press and release straddle the update would be lost (and a test
    clicking one got a stale element)."""
    project, dashboard = running
    open_page(browser, dashboard)
    button = browser.find_element("css selector", "tr[data-service='chatty'] button.restart")
    read_at = browser.execute_script("return document.body.dataset.stateAt")
    project.container("chatty").restart(timeout=0)  # events: the rows are read and sent again
    poll(
        lambda: browser.execute_script("return document.body.dataset.stateAt") != read_at,
        timeout=30,
    )
    assert browser.execute_script("return arguments[0].isConnected", button)


def test_restart_from_the_page_restarts_the_container_and_the_logs_follow_it(
    running: tuple[Project, Dashboard], browser: Any
) -> None:
    project, dashboard = running
    open_page(browser, dashboard)
    chatty_lines = """return [...document.querySelectorAll('#logs .l')]
        .filter(l => l.dataset.service === 'chatty').map(l => l.dataset.text);"""
    poll(lambda: browser.execute_script(chatty_lines), timeout=15)
    starts = browser.execute_script(chatty_lines).count("chatty started")
    before = project.container("chatty").attrs["State"]["StartedAt"]
    browser.find_element("css selector", "tr[data-service='chatty'] button.restart").click()
    poll(lambda: project.container("chatty").attrs["State"]["StartedAt"] != before, timeout=30)

    def followed() -> bool:  # the new start's first lines reached the page
        lines = browser.execute_script(chatty_lines)
        if lines.count("chatty started") <= starts:
            return False  # (index() raised when no start line had reached the page yet)
        last = len(lines) - 1 - lines[::-1].index("chatty started")
        return "tick 1 odd" in lines[last:]

    poll(followed, timeout=30)


def test_the_log_filter_by_text_and_by_service(
    running: tuple[Project, Dashboard], browser: Any
) -> None:
    _, dashboard = running
    open_page(browser, dashboard)
    visible = """return [...document.querySelectorAll('#logs .l')].filter(l => !l.hidden)
                   .map(l => [l.dataset.service, l.dataset.text]);"""
    poll(lambda: len(browser.execute_script(visible)) > 10, timeout=15)
    box = browser.find_element("id", "log-filter")
    box.send_keys("odd")
    lines = poll(lambda: browser.execute_script(visible), timeout=5)
    assert all("odd" in text for _, text in lines)
    # new lines are filtered as they arrive
    count = len(lines)
    poll(lambda: len(browser.execute_script(visible)) > count, timeout=10)
    assert all("odd" in text for _, text in browser.execute_script(visible))
    browser.execute_script(
        "const box = document.getElementById('log-filter'); box.value = '';"
        "box.dispatchEvent(new Event('input'));"
    )
    browser.find_element("css selector", "#log-services input[data-service='chatty']").click()
    lines = poll(lambda: browser.execute_script(visible), timeout=10)
    assert lines and all(service == "web" for service, _ in lines)
    browser.find_element("css selector", "#log-services input[data-service='chatty']").click()
