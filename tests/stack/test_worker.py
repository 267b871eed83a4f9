"""The Celery worker, end to end: the API queues a task, the worker writes a row and returns it."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
import redis

from service.config import Settings

from .conftest import poll


def enqueue(api: httpx.Client, message: str, work_s: float = 0.0) -> str:
    """POST a task; return its id."""
    response = api.post("/api/v1/tasks", json={"message": message, "work_s": work_s})
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["state"] == "SENT"
    assert response.headers["location"] == body["url"] == f"/api/v1/tasks/{body['id']}"
    task_id: str = body["id"]
    return task_id


def finished(api: httpx.Client, task_id: str, timeout: float = 30.0) -> dict[str, Any]:
    """Poll the task until it leaves SENT/STARTED; return its final state."""

    def done() -> dict[str, Any] | None:
        body: dict[str, Any] = api.get(f"/api/v1/tasks/{task_id}").json()
        return body if body["state"] not in {"SENT", "STARTED"} else None

    return poll(done, timeout=timeout, interval=0.05)


def test_task_writes_a_row_and_returns_it(api: httpx.Client, sql: Callable[..., list[Any]]) -> None:
    message = f"stack test {uuid.uuid4()}"
    task_id = enqueue(api, message)
    body = finished(api, task_id)
    assert body["state"] == "SUCCESS", body
    result = body["result"]
    assert result["id"] == task_id
    assert result["message"] == message
    assert result["attempts"] == 1
    assert result["worker"].startswith("celery@")
    assert result["finished_at"] >= result["created_at"]

    row = sql(
        "SELECT id, message, attempts, worker FROM task_records WHERE id = $1", uuid.UUID(task_id)
    )
    assert [dict(r) for r in row] == [
        {"id": uuid.UUID(task_id), "message": message, "attempts": 1, "worker": result["worker"]}
    ]


def test_a_running_task_reports_its_state(api: httpx.Client) -> None:
    task_id = enqueue(api, "slow", work_s=1.0)
    assert api.get(f"/api/v1/tasks/{task_id}").json()["state"] in {"SENT", "STARTED"}
    poll(lambda: api.get(f"/api/v1/tasks/{task_id}").json()["state"] == "STARTED", timeout=30)
    assert finished(api, task_id)["state"] == "SUCCESS"


def test_results_live_in_their_own_redis_database(
    api: httpx.Client, redis_db: Callable[[int], redis.Redis], settings: Settings
) -> None:
    task_id = enqueue(api, "where is my result")
    assert finished(api, task_id)["state"] == "SUCCESS"
    key = f"celery-task-meta-{task_id}"
    assert settings.result_db not in {settings.cache_db, settings.broker_db}
    assert redis_db(settings.result_db).exists(key) == 1
    assert redis_db(settings.cache_db).exists(key) == 0


def test_unknown_task_is_404(api: httpx.Client) -> None:
    response = api.get(f"/api/v1/tasks/{uuid.uuid4()}")
    assert response.status_code == 404
    assert "unknown" in response.json()["detail"]


def test_bad_requests_are_422(api: httpx.Client) -> None:
    assert api.get("/api/v1/tasks/not-a-uuid").status_code == 422
    assert api.post("/api/v1/tasks", json={"message": ""}).status_code == 422
    assert api.post("/api/v1/tasks", json={"message": "x", "work_s": 3600}).status_code == 422
