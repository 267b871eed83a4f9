"""The Celery app, one factory for the worker (runs tasks) and the API (sends them, reads results).

Delivery guarantee: a task is acknowledged only after it ran (``task_acks_late``). If the
worker's pool process dies mid-task, the parent rejects the message back onto the queue
(``task_reject_on_worker_lost``). If the whole worker dies (``docker kill``), the message stays
in the broker's "unacked" set and is delivered again once ``AI_AGENTS_CELERY_VISIBILITY_TIMEOUT_S``
has passed since its delivery; a worker checks for such messages when it starts and then every
few seconds. Tasks must therefore be idempotent (``service.tasks.record`` is, per task id) and
finish well within the visibility timeout.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from service.config import Settings

if TYPE_CHECKING:
    from celery import Celery

RECORD_TASK: Final = "service.tasks.record"
# A second queue with a worker of its own (stack.py's worker-reports): its tasks never wait
# behind the default queue's.
REPORT_TASK: Final = "service.tasks.report"
REPORTS_QUEUE: Final = "reports"
TASK_MODULES: Final = ("service.tasks",)
# State the API stores before it sends a task: tells a queued task from an unknown id, which
# Celery reports as PENDING.
SENT: Final = "SENT"
MAX_WORK_S: Final = 30.0  # the demo task's simulated work: well below the visibility timeout
TASK_TIME_LIMIT_S: Final = 60  # hard limit: the pool process running a task is killed after it
RESULT_EXPIRES_S: Final = 24 * 3600
REDIS_TIMEOUT_S: Final = 5.0
# How often a running worker looks for messages whose worker died (seconds); kombu's default
# (100 s) would leave a killed worker's task waiting long after its visibility timeout.
RESTORE_INTERVAL_S: Final = 5


def create_celery(settings: Settings) -> Celery:
    """A Celery app on the configured broker and result backend; opens no connection."""
    from celery import Celery  # here: importing this module stays cheap for the API

    app = Celery(
        "service",
        broker=settings.celery_broker_url,
        backend=settings.result_backend_url,
        include=list(TASK_MODULES),
    )
    app.conf.update(
        # Delivery: ack after the task ran; requeue when the process running it dies.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,  # a dying worker holds at most one unstarted message
        worker_cancel_long_running_tasks_on_connection_loss=True,
        broker_transport_options={
            "visibility_timeout": settings.celery_visibility_timeout_s,
            "unacked_restore_interval": RESTORE_INTERVAL_S,
            "unacked_restore_throttle": 1,
            "socket_connect_timeout": REDIS_TIMEOUT_S,
        },
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=REDIS_TIMEOUT_S,
        # The API answers 503 within seconds when the broker is down, instead of hanging.
        task_publish_retry_policy={
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.5,
            "interval_max": 1,
        },
        # Results and states.
        task_track_started=True,
        result_expires=RESULT_EXPIRES_S,
        redis_socket_connect_timeout=REDIS_TIMEOUT_S,
        redis_socket_timeout=REDIS_TIMEOUT_S,
        # JSON only: no pickle from the broker.
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_time_limit=TASK_TIME_LIMIT_S,
        enable_utc=True,
        timezone="UTC",
        task_routes={REPORT_TASK: {"queue": REPORTS_QUEUE}},
    )
    return app
