"""The API's side of the task queue: send a task, read its state; blocking calls, run in threads.

Celery (about 0.3 s of imports) is loaded on the first task request, not at API start.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import uuid4

from service.celery_app import RECORD_TASK, SENT, create_celery
from service.config import Settings

if TYPE_CHECKING:
    from celery import Celery


class QueueUnavailable(Exception):
    """The broker or the result backend did not answer."""


@dataclass(frozen=True)
class TaskStatus:
    """What the result backend knows of one task."""

    state: str
    result: Any = None
    error: str | None = None


def _describe(exc: BaseException) -> str:
    """``Type: message`` on one line."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split()) or 'no details'}"


class TaskClient:
    """Sends ``service.tasks.record`` and reads task states; thread-safe, lazy, closeable."""

    def __init__(self, settings: Settings) -> None:
        """Nothing is imported or connected until the first call."""
        self._settings = settings
        self._lock = threading.Lock()
        self._celery: Celery | None = None

    def _app(self) -> Celery:
        with self._lock:
            if self._celery is None:
                self._celery = create_celery(self._settings)
            return self._celery

    def _errors(self) -> tuple[type[BaseException], ...]:
        from kombu.exceptions import OperationalError
        from redis.exceptions import RedisError

        return (OperationalError, RedisError, OSError)

    def enqueue(self, message: str, work_s: float) -> str:
        """Queue one ``record`` task; return its id. Raises QueueUnavailable."""
        app = self._app()
        task_id = str(uuid4())
        errors = self._errors()
        try:
            # SENT first: a worker's STARTED/SUCCESS can only come after it, never be overwritten.
            app.backend.store_result(task_id, None, SENT)
        except errors as exc:
            raise QueueUnavailable(_describe(exc)) from exc
        try:
            app.send_task(
                RECORD_TASK, kwargs={"message": message, "work_s": work_s}, task_id=task_id
            )
        except errors as exc:
            with contextlib.suppress(*errors):  # best effort: no SENT state for a task never sent
                app.backend.forget(task_id)
            raise QueueUnavailable(_describe(exc)) from exc
        return task_id

    def status(self, task_id: str) -> TaskStatus | None:
        """The task's state and result or error; None if the id is unknown or expired."""
        from celery import states

        try:
            meta = self._app().backend.get_task_meta(task_id)
        except self._errors() as exc:
            raise QueueUnavailable(_describe(exc)) from exc
        state = str(meta["status"])
        if state == states.PENDING:  # Celery's answer for ids it has never seen
            return None
        if state in states.EXCEPTION_STATES:
            error = meta.get("result")
            return TaskStatus(state, error=_describe(error) if error else None)
        if state == states.SUCCESS:
            return TaskStatus(state, result=meta.get("result"))
        return TaskStatus(state)

    def close(self) -> None:
        """Release the broker and backend connections, if any were opened."""
        with self._lock:
            if self._celery is not None:
                self._celery.close()
                self._celery = None
