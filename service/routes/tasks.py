"""``/api/v1/tasks``: queue the worker's ``record`` task and read its state and result."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from pydantic import BaseModel, Field

from service.celery_app import MAX_WORK_S, SENT
from service.records import TaskRecord
from service.task_client import QueueUnavailable, TaskClient

router = APIRouter(prefix="/api/v1/tasks", tags=["tasks"])


def get_task_client(request: Request) -> TaskClient:
    """The app's task client (created with the app)."""
    client = request.app.state.task_client
    if not isinstance(client, TaskClient):
        raise RuntimeError("app.state.task_client is not set: build the app with create_app()")
    return client


TaskClientDep = Annotated[TaskClient, Depends(get_task_client)]


class TaskRequest(BaseModel):
    """What the ``record`` task writes, and how long it pretends to work."""

    message: str = Field(min_length=1, max_length=1000)
    work_s: float = Field(default=0.0, ge=0, le=MAX_WORK_S, description="simulated work")


class TaskAccepted(BaseModel):
    """A queued task: poll ``url`` for its state."""

    id: UUID
    state: str
    url: str


class TaskState(BaseModel):
    """A task's state (SENT, STARTED, RETRY, SUCCESS, FAILURE), result or error."""

    id: UUID
    state: str
    result: TaskRecord | None = None
    error: str | None = None


_UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    status.HTTP_503_SERVICE_UNAVAILABLE: {"description": "The broker or result backend is down"}
}


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=TaskAccepted,
    responses=_UNAVAILABLE,
    summary="Queue a task that writes a row and returns it",
)
def create_task(body: TaskRequest, tasks: TaskClientDep, response: Response) -> TaskAccepted:
    """Send ``record`` to the worker; 202 with the id to poll (503 if the broker is down)."""
    try:
        task_id = tasks.enqueue(body.message, body.work_s)
    except QueueUnavailable as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"task queue: {exc}") from exc
    url = f"{router.prefix}/{task_id}"
    response.headers["Location"] = url
    return TaskAccepted(id=UUID(task_id), state=SENT, url=url)


@router.get(
    "/{task_id}",
    response_model=TaskState,
    response_model_exclude_none=True,
    responses={
        status.HTTP_404_NOT_FOUND: {"description": "Unknown id, or its result expired"},
        **_UNAVAILABLE,
    },
    summary="A task's state and result",
)
def read_task(task_id: UUID, tasks: TaskClientDep) -> TaskState:
    """State and, once finished, the row the task wrote (or its error)."""
    try:
        found = tasks.status(str(task_id))
    except QueueUnavailable as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"task queue: {exc}") from exc
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no task {task_id} (unknown, or expired)")
    return TaskState(id=task_id, state=found.state, result=found.result, error=found.error)
