"""The worker's tasks (imported by the worker only; the API sends them by name)."""

from __future__ import annotations

import asyncio
from typing import Any

from celery import Task, shared_task

from service.celery_app import MAX_WORK_S, RECORD_TASK, REPORT_TASK
from service.config import get_settings
from service.records import TaskRecord, record_task


@shared_task(name=RECORD_TASK, bind=True)
def record(self: Task[Any, Any], message: str, work_s: float = 0.0) -> TaskRecord:
    """Write a ``task_records`` row for this task, work ``work_s`` seconds, return the row.

    Idempotent per task id: run again after its worker died, it updates the same row and
    ``attempts`` counts the runs.
    """
    task_id = self.request.id
    if task_id is None:  # called directly, not through a worker
        raise RuntimeError("record must run as a Celery task")
    work_s = min(max(work_s, 0.0), MAX_WORK_S)
    worker = self.request.hostname or "unknown"
    dsn = get_settings().database_url
    return asyncio.run(record_task(dsn, task_id, message, worker, work_s))


@shared_task(name=REPORT_TASK, bind=True)
def report(self: Task[Any, Any], subject: str) -> dict[str, str]:
    """A report on `subject`, made by the reports queue's own worker: says which worker ran it."""
    return {"subject": subject, "worker": self.request.hostname or "unknown"}
