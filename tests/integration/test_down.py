"""`down` kills what the declaration calls disposable (the Celery worker, the API) instead of
waiting for its graceful stop (issue 23), and loses no task doing so: the worker acks late, so
the task it was running stays unacked in Redis, whose append-only file in its volume survives
`down`; after `up` a worker runs it again. Real engine, real Redis broker, real worker."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from .conftest import Project, poll
from .test_services import started_task

WORK_S = 8.0  # the task's work: much longer than `down` takes once the worker is killed
# the broker's visibility timeout: an unacked task is delivered again this long after its
# delivery (longer than the work, or the run after `up` is delivered a second time meanwhile)
VISIBILITY_S = 12


def test_a_task_running_during_down_runs_to_completion_after_up(
    make_project: Callable[..., Project],
) -> None:
    project = make_project(AI_AGENTS_CELERY_VISIBILITY_TIMEOUT_S=str(VISIBILITY_S))
    project.run("up", "--quiet")
    url = started_task(project, "cut by down", WORK_S)

    started = time.monotonic()
    project.run("down", "--quiet")
    took = time.monotonic() - started
    # the worker was killed, not waited for: its task had most of its work still to do
    assert took < WORK_S / 2, f"down took {took:.1f}s with a task running"
    assert project.resources()["containers"] == []

    project.run("up", "--quiet")  # the same volumes: Redis still holds the unacked task
    state = poll(
        lambda: (s := httpx.get(url, timeout=5).json())["state"] == "SUCCESS" and s,
        timeout=VISIBILITY_S + WORK_S + 60,
    )
    result = state["result"]
    assert result["message"] == "cut by down"
    assert result["attempts"] == 2  # the run `down` cut, then the one after `up`
