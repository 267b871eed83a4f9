"""The worker, the migrations job and the tests run inside the stack (issue 11), and a dev
server that says at once when the developer's code is broken (issue 15), on a real engine."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from uuid import UUID

import asyncpg
import httpx
import pytest

from service.worker import READY_CHECK

from .conftest import REPO_ROOT, Project, poll
from .test_faults import assert_clear_failure, copy_repo

ERROR_PAGE_DEADLINE = 0.5  # seconds from saving a broken file to the error page
FETCH_METRICS = (
    "import urllib.request as u; print(u.urlopen('http://127.0.0.1:9808/metrics').read().decode())"
)


def queue_task(project: Project, message: str, work_s: float = 0.0) -> str:
    """Queue the worker's task through the API; the URL of its state."""
    queued = httpx.post(
        f"{project.api_url}/api/v1/tasks", json={"message": message, "work_s": work_s}, timeout=5
    )
    assert queued.status_code == 202, queued.text
    return f"{project.api_url}{queued.json()['url']}"


def task_result(project: Project, message: str, work_s: float = 0.0) -> dict[str, object]:
    """Queue the worker's task through the API and wait for its result."""
    url = queue_task(project, message, work_s)

    def done() -> dict[str, object] | None:
        state = httpx.get(url, timeout=5).json()
        return state if state["state"] == "SUCCESS" else None

    return poll(done, timeout=60, interval=0.1)  # type: ignore[no-any-return]


def recorded_attempts(project: Project, task_id: str) -> int | None:
    """How many runs of the task wrote its row so far (None: no run got that far yet)."""

    async def read() -> int | None:
        conn = await asyncpg.connect(project.dsn)
        try:
            query = "SELECT attempts FROM task_records WHERE id = $1"
            return await conn.fetchval(query, UUID(task_id))  # type: ignore[no-any-return]
        finally:
            await conn.close()

    return asyncio.run(read())


def started_task(project: Project, message: str, work_s: float) -> str:
    """Queue the worker's task through the API, wait until its run wrote its row; its URL.

    Not "STARTED": a worker reports that before the task's code runs, so a worker killed
    then may die before the run wrote anything, and the run after counts as the first.
    """
    url = queue_task(project, message, work_s)
    poll(lambda: recorded_attempts(project, url.rsplit("/", 1)[1]) == 1, timeout=30)
    return url


# --- on one running stack ------------------------------------------------------------------
def test_the_worker_runs_a_task_through_the_database(running: Project) -> None:
    state = task_result(running, "hello from the test")
    result = state["result"]
    assert isinstance(result, dict) and result["message"] == "hello from the test"
    assert result["attempts"] == 1


def test_status_and_plan_include_the_worker_and_migrations(running: Project) -> None:
    services = {
        s["service"]: s for s in json.loads(running.run("status", "--json").stdout)["services"]
    }
    assert services["worker"]["state"] == "running" and services["worker"]["ports"] == []
    assert services["migrate"]["state"] == "exited"
    plan = running.run("up", "--plan").stdout
    assert "migrations: at head" in plan, plan
    assert f"keep      container  {running.name}-worker" in plan


def test_exec_in_the_worker(running: Project) -> None:
    result = running.run("exec", "worker", "--", "sh", "-c", "echo $AI_AGENTS_CELERY_BROKER_URL")
    assert result.stdout.strip() == "redis://redis:6379/1"


def test_stack_tests_run_inside_the_stack(running: Project) -> None:
    result = running.run("test", timeout=600)
    assert " passed" in result.stdout and " failed" not in result.stdout, result.stdout
    assert not (REPO_ROOT / "tests" / "stack" / "__pycache__").exists()
    assert not (REPO_ROOT / "tests" / "stack" / ".pytest_cache").exists()


def test_a_killed_worker_does_not_lose_its_task(make_project: Callable[..., Project]) -> None:
    project = make_project(AI_AGENTS_CELERY_VISIBILITY_TIMEOUT_S="5")
    project.run("up", "--quiet")
    url = started_task(project, "survivor", 4)
    project.container("worker").kill()
    project.run("up", "--quiet")  # starts the worker again; the task comes back to it
    state = poll(
        lambda: (s := httpx.get(url, timeout=5).json())["state"] == "SUCCESS" and s, timeout=90
    )
    assert state["result"]["attempts"] == 2


# Run inside the worker's container: a second worker on a queue of its own gets SIGTERM; a
# task sent to that queue 0.2 s later must stay in the queue (a worker told to stop takes no
# more work: Celery's loop checks its stop flag only once a second, and a task it took then
# waited for its whole shutdown, ~2 s, before going back to the queue). Prints the queue's
# length after the worker exited, then the worker's log.
STOPPING_WORKER_PROBE = """
import os, signal, subprocess, sys, time
from service.worker import app
queue = "probe-%d" % os.getpid()
env = dict(os.environ, AI_AGENTS_CELERY_READY_FILE="/tmp/%s.ready" % queue)
env["AI_AGENTS_METRICS"] = "false"
log = open("/tmp/%s.log" % queue, "w+")
worker = subprocess.Popen(["celery", "-A", "service.worker", "worker", "-Q", queue, "-l", "INFO",
    "--concurrency", "1", "--without-mingle", "--without-gossip"], stdout=log, stderr=log, env=env)
deadline = time.monotonic() + 30
while "ready." not in open(log.name).read() and time.monotonic() < deadline:
    time.sleep(0.02)
assert "ready." in open(log.name).read(), "the probe worker did not start"
worker.send_signal(signal.SIGTERM)
time.sleep(0.2)  # the stop flag is set by now
app.send_task("service.tasks.record", args=["probe"], queue=queue)
worker.wait(30)
with app.connection_for_write() as connection:
    print(connection.default_channel.client.llen(queue))
    connection.default_channel.client.delete(queue)
print(open(log.name).read())
"""


def test_a_worker_told_to_stop_takes_no_more_tasks(running: Project) -> None:
    worker = running.container("worker")
    for _ in range(3):  # without the fix, each round fails four times out of five
        result = worker.exec_run(["python", "-c", STOPPING_WORKER_PROBE], workdir="/app")
        assert result.exit_code == 0, result.output.decode()
        length, _, log = result.output.decode().partition("\n")
        assert " received" not in log, log
        assert length == "1", log


OLD_TASK_S = 15  # the task running through the reload: long beside a reload (~0.3 s)


def test_a_worker_reload_runs_new_code_at_once_while_the_running_task_finishes(
    tmp_path: Path, make_project: Callable[..., Project]
) -> None:
    """dev mode restarts the worker with `--overlap`: the new code takes the next task while
    the old worker finishes the one it runs (once, on the old code), then exits; the
    container stays ready and keeps serving its metrics."""
    project = scratch(tmp_path, make_project)
    project.run("up", "--quiet")
    url = started_task(project, "old", OLD_TASK_S)

    tasks = project.project_dir / "service" / "tasks.py"
    needle = "record_task(dsn, task_id, message, worker, work_s)"
    assert needle in tasks.read_text()
    tasks.write_text(
        tasks.read_text().replace(needle, needle.replace("message,", "message + '+new',"))
    )

    # a task is queued at each poll, none waited for alone: one queued before the watcher saw
    # the save may run the old code, and one the old worker took as it was told to stop waits
    # until it exits (after the old task) to be handed to the new worker
    queued: list[str] = []

    def new_code_ran() -> dict[str, object] | None:
        queued.append(queue_task(project, "m"))
        for url in list(queued):
            state = httpx.get(url, timeout=5).json()
            if state["state"] != "SUCCESS":
                continue
            queued.remove(url)
            if state["result"]["message"] == "m+new":
                return state["result"]  # type: ignore[no-any-return]
        return None

    new = poll(new_code_ran, timeout=OLD_TASK_S, interval=0.2)
    state = poll(lambda: (s := httpx.get(url, timeout=5).json())["state"] == "SUCCESS" and s, 40)
    assert state["result"]["message"] == "old"  # finished by the old code, not redone
    assert state["result"]["attempts"] == 1
    # the new code ran while the old task still worked (the database's clock for both; not
    # "STARTED" at one moment, which a loaded machine's slow poll could miss)
    finished = datetime.fromisoformat(str(state["result"]["finished_at"]))
    assert datetime.fromisoformat(str(new["finished_at"])) < finished
    worker = project.container("worker")
    poll(lambda: b"the old command" in worker.logs(tail=300), timeout=30)  # it exited
    # the ready file names the new worker (the old one's shutdown left it alone) ...
    assert worker.exec_run(READY_CHECK).exit_code == 0
    # ... and the new worker serves the metrics port the old one held
    metrics = poll(
        lambda: (r := worker.exec_run(["python", "-c", FETCH_METRICS])).exit_code == 0 and r,
        timeout=15,
    )
    assert b"celery_tasks_total" in metrics.output


# --- migrations that fail, and a task module that does not import -------------------------
def scratch(tmp_path: Path, make_project: Callable[..., Project]) -> Project:
    return make_project(copy_repo(tmp_path / "repo"))


BAD_SQL = '''"""bad"""
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.execute("ALTER TABLE no_such_table ADD COLUMN x int")


def downgrade() -> None:
    pass
'''


@pytest.mark.parametrize(
    ("content", "expected"),
    [(BAD_SQL, "no_such_table"), ("revision = '0002'\ndown_revision = (\n", "SyntaxError")],
    ids=["database-error", "syntax-error"],
)
def test_a_failing_migration_stops_up_and_a_fix_converges(
    tmp_path: Path, make_project: Callable[..., Project], content: str, expected: str
) -> None:
    project = scratch(tmp_path, make_project)
    bad = project.project_dir / "alembic" / "versions" / "0002_bad.py"
    bad.write_text(content)
    result = project.run("up", "--quiet", check=False)
    assert_clear_failure(result, 1, "migrate", expected)
    for service in ("api", "worker"):
        assert project.container(service).status != "running"
    bad.unlink()
    project.run("up", "--quiet")
    assert httpx.get(f"{project.api_url}/health", timeout=5).status_code == 200


def test_a_task_module_that_fails_to_import_fails_up_at_once(
    tmp_path: Path, make_project: Callable[..., Project]
) -> None:
    project = scratch(tmp_path, make_project)
    tasks = project.project_dir / "service" / "tasks.py"
    future = "from __future__ import annotations\n"
    tasks.write_text(tasks.read_text().replace(future, future + "import no_such_module_here\n"))
    started = time.monotonic()
    result = project.run("up", "--quiet", "--timeout", "120", check=False)
    assert time.monotonic() - started < 60
    assert_clear_failure(result, 1, "worker", "no_such_module_here")


# --- a dev server that says so when the code is broken --------------------------------------
BROKEN = {
    "syntax-error": ("service/routes/meta.py", "x = 1\nfrom __future__ import annotations\n"),
    "missing-module": ("service/routes/meta.py", "import no_such_module_at_all\n"),
    "lifespan-error": (
        "service/main.py",
        None,  # replaced below: the lifespan raises
    ),
}


def _break(project_dir: Path, case: str) -> tuple[Path, str, int]:
    """Break the code; the file, its good content and the broken line's number."""
    relative, prefix = BROKEN[case]
    path = project_dir / relative
    good = path.read_text()
    if prefix is None:
        marker = "    async def lifespan(_: FastAPI) -> AsyncIterator[LifespanState]:\n"
        assert marker in good
        broken = good.replace(marker, marker + "        raise RuntimeError('lifespan broke')\n")
        line = good[: good.index(marker)].count("\n") + 2
    else:
        broken = prefix + good
        line = prefix.count("\n")
    path.write_text(broken)
    return path, good, line


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_code_gets_an_error_page_at_once_and_a_fix_restores(
    tmp_path: Path, make_project: Callable[..., Project], case: str
) -> None:
    project = scratch(tmp_path, make_project)
    project.run("up", "--quiet", "api")
    path, good, line = _break(project.project_dir, case)
    saved = time.monotonic()

    def error_page() -> httpx.Response | None:
        response = httpx.get(f"{project.api_url}/health", timeout=2)
        return response if "x-devstack-code-error" in response.headers else None

    page = poll(error_page, timeout=10, interval=0.02)
    assert time.monotonic() - saved < ERROR_PAGE_DEADLINE + 0.5  # poll and request overhead
    assert page.status_code == 503
    where = f"{path.relative_to(project.project_dir)}:"
    summary = page.headers["x-devstack-code-error"]
    assert where in summary and where in page.text, (summary, page.text)
    status = json.loads(project.run("status", "--json").stdout)
    api = next(s for s in status["services"] if s["service"] == "api")
    assert api["health"] == "code error" and api["code_error"] == summary
    del line
    path.write_text(good)
    poll(lambda: httpx.get(f"{project.api_url}/health", timeout=2).status_code == 200, 10)


def test_up_on_broken_code_fails_fast_with_the_summary_first(
    tmp_path: Path, make_project: Callable[..., Project]
) -> None:
    project = scratch(tmp_path, make_project)
    _break(project.project_dir, "syntax-error")
    result = project.run("up", "--quiet", "--timeout", "120", check=False)
    output = assert_clear_failure(result, 1, "SyntaxError")
    error_line = next(line for line in output.splitlines() if line.startswith("error:"))
    assert "SyntaxError" in error_line and "service/routes/meta.py:" in error_line
