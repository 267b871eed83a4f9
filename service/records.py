"""Writes of the worker's task: one ``task_records`` row per task, through asyncpg."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

CONNECT_TIMEOUT_S = 5.0
COMMAND_TIMEOUT_S = 10.0

# A task delivered again (its worker died before acknowledging it) keeps its row and counts
# the attempt: the write is idempotent per task id.
_START = """
INSERT INTO task_records (id, message, worker)
VALUES ($1, $2, $3)
ON CONFLICT (id) DO UPDATE
    SET worker = EXCLUDED.worker, attempts = task_records.attempts + 1, finished_at = NULL
"""
_FINISH = """
UPDATE task_records SET finished_at = now() WHERE id = $1
RETURNING id, message, worker, attempts, created_at, finished_at
"""


class TaskRecord(TypedDict):
    """A ``task_records`` row as JSON-ready values (what the task returns as its result)."""

    id: str
    message: str
    worker: str
    attempts: int
    created_at: str
    finished_at: str


def _as_record(row: Any) -> TaskRecord:
    """Convert an asyncpg row to plain JSON types."""
    created: datetime = row["created_at"]
    finished: datetime = row["finished_at"]
    return TaskRecord(
        id=str(row["id"]),
        message=row["message"],
        worker=row["worker"],
        attempts=row["attempts"],
        created_at=created.isoformat(),
        finished_at=finished.isoformat(),
    )


async def record_task(
    dsn: str, task_id: str, message: str, worker: str, work_s: float = 0.0
) -> TaskRecord:
    """Record the task as started, work for ``work_s`` seconds, record it finished; return it.

    One connection per call: a Celery task is synchronous and runs this in its own
    ``asyncio.run`` loop, and an asyncpg pool cannot outlive the loop it was made in. A
    connection costs a few milliseconds on the stack's network, small next to a task's trip
    through the broker.
    """
    conn = await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT_S, command_timeout=COMMAND_TIMEOUT_S)
    try:
        await conn.execute(_START, UUID(task_id), message, worker)
        if work_s > 0:
            await asyncio.sleep(work_s)  # stands in for real work; lets a test kill us mid-task
        row = await conn.fetchrow(_FINISH, UUID(task_id))
    finally:
        await conn.close()
    if row is None:  # the row was deleted while we worked
        raise LookupError(f"task_records row {task_id} vanished while the task ran")
    return _as_record(row)
