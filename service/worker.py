"""The worker's entry point: ``celery -A service.worker worker``.

Readiness without starting an interpreter: when the worker consumes from the broker (Celery's
``worker_ready`` signal) it writes ``<pid> <start time>`` of its main process to
``AI_AGENTS_CELERY_READY_FILE`` and removes the file when it shuts down. ``READY_CHECK`` (a
POSIX shell one-liner for ``docker exec``) passes only while that very process is alive, so a
file left behind by a killed worker (the container restarted, or watchfiles restarted the
worker) never passes for the next one.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from celery import Celery, bootsteps
from celery.signals import (
    task_postrun,
    task_prerun,
    worker_init,
    worker_ready,
    worker_shutdown,
    worker_shutting_down,
)

from service.celery_app import create_celery
from service.config import Settings, get_settings
from service.metrics import TaskMetrics, multiprocess_dir, reset_multiprocess_dir, worker_registry

logger = logging.getLogger(__name__)

# dev mode starts a new worker while the one it replaces finishes its tasks (devserver
# --overlap, up to a minute): the new one takes the metrics port once the old one lets go
METRICS_BIND_WAIT_S = 120.0
DEFAULT_READY_FILE = Settings.model_fields["celery_ready_file"].default


def ready_check(ready_file: str = DEFAULT_READY_FILE) -> list[str]:
    """``docker exec`` argv that exits 0 only while the worker that wrote ``ready_file`` runs.

    Field 22 of ``/proc/PID/stat`` is the process' start time; it is read after the ``) ``
    that closes the command name (which may contain spaces), where it is field 20.
    """
    script = (
        f'read -r pid start < {ready_file} && stat=$(cat /proc/"$pid"/stat) '
        '&& set -- ${stat##*") "} && [ "${20}" = "$start" ]'
    )
    return ["sh", "-c", script]


READY_CHECK = ready_check()


def process_start_time(pid: int) -> str:
    """The start time of ``pid`` in clock ticks since boot (``/proc/PID/stat`` field 22)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rpartition(") ")[2].split()[19]


def mark_ready(ready_file: Path, pid: int | None = None) -> None:
    """Write ``<pid> <start time>`` atomically (a reader never sees half a file)."""
    pid = os.getpid() if pid is None else pid
    partial = ready_file.with_name(f"{ready_file.name}.{pid}.partial")
    partial.write_text(f"{pid} {process_start_time(pid)}\n")
    partial.replace(ready_file)


def clear_ready(ready_file: Path, pid: int | None = None) -> None:
    """Remove the ready file if it names ``pid`` (default: this process). A worker replaced
    on a code change shuts down after its successor wrote the file: that one stays."""
    pid = os.getpid() if pid is None else pid
    with contextlib.suppress(FileNotFoundError, ValueError, IndexError):
        if int(ready_file.read_text().split()[0]) == pid:
            ready_file.unlink()


def _ready_file(sender: Any) -> Path:
    """The ready file named by the settings of the app that sent a worker signal."""
    app = getattr(sender, "app", None)
    path = getattr(getattr(app, "conf", None), "service_ready_file", None)
    return Path(path or DEFAULT_READY_FILE)


@worker_ready.connect
def _on_worker_ready(sender: Any = None, **_: Any) -> None:
    """The consumer is connected and consuming: say so through the ready file."""
    ready_file = _ready_file(sender)
    try:
        mark_ready(ready_file)
    except OSError as exc:  # e.g. no /proc (not Linux) or a read-only /tmp
        logger.warning("could not write the ready file %s: %s", ready_file, exc)


@worker_shutdown.connect
def _on_worker_shutdown(sender: Any = None, **_: Any) -> None:
    """The worker stops consuming: it is no longer ready."""
    clear_ready(_ready_file(sender))


TASKS = TaskMetrics()


@task_prerun.connect
def _on_task_started(task_id: str | None = None, **_: Any) -> None:
    if task_id:
        TASKS.started(task_id)


@task_postrun.connect
def _on_task_finished(
    task_id: str | None = None, task: Any = None, state: str | None = None, **_: Any
) -> None:
    name = getattr(task, "name", None) or "unknown"
    if task_id:
        TASKS.finished(task_id, name)
    TASKS.count(name, state or "")


@worker_init.connect
def _serve_metrics(sender: Any = None, **_: Any) -> None:
    """The main process serves every process' task metrics and its queues' lengths."""
    app = getattr(sender, "app", None)
    port = getattr(getattr(app, "conf", None), "service_metrics_port", None)
    if not port or app is None:
        return
    from prometheus_client import start_http_server

    directory = multiprocess_dir()
    if directory is not None:
        reset_multiprocess_dir(directory)
    queues = app.amqp.queues
    names = tuple(sorted(queues.consume_from or queues))
    registry = worker_registry(app.conf.broker_url, names)

    def serve() -> None:
        """Bind, retrying while a worker being replaced (dev mode) still holds the port."""
        deadline = time.monotonic() + METRICS_BIND_WAIT_S
        while True:
            try:
                start_http_server(port, registry=registry)
                return
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                    logger.warning("metrics: cannot serve on port %s: %s", port, exc)
                    return
            time.sleep(0.05)

    threading.Thread(target=serve, name="metrics-bind", daemon=True).start()


class WakeOnShutdown(bootsteps.StartStopStep):
    """Stop consuming as soon as SIGTERM comes. Celery's loop checks its stop flag only when
    its poll returns (up to a second later); a task it took meanwhile waits for the whole
    warm shutdown (~2 s) before it goes back to the queue. dev mode replaces the worker on a
    code change with SIGTERM while its successor starts: the successor should get that task.
    The signal handler writes to a pipe the loop polls, which wakes it at once."""

    requires = ("celery.worker.components:Hub",)

    def start(self, parent: Any) -> None:
        hub = getattr(parent, "hub", None)
        if hub is None:  # a pool without an event loop (solo, threads): nothing to wake
            return
        read_fd, write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        os.set_blocking(write_fd, False)
        hub.add_reader(read_fd, _drain, read_fd)
        _WAKE_FDS.append(write_fd)


_WAKE_FDS: list[int] = []


def _drain(fd: int) -> None:
    with contextlib.suppress(BlockingIOError, OSError):
        os.read(fd, 512)


@worker_shutting_down.connect
def _wake_the_loop(**_: Any) -> None:
    """Runs in the SIGTERM handler of the main process: make the event loop's poll return."""
    for fd in _WAKE_FDS:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(fd, b"x")


class UnblockOnStop(bootsteps.StartStopStep):
    """Release the broker poll when the worker stops consuming. The Redis transport waits
    for tasks in a BRPOP of up to a second; cancelled, it stays blocked in Redis, which hands
    the next task to it (the longest waiting client) rather than to the successor that dev
    mode starts beside it, and the task waits for the whole shutdown. `CLIENT UNBLOCK` ends
    that BRPOP as if it timed out: nothing is popped, nothing is lost."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def stop(self, parent: Any) -> None:  # runs just before the Tasks step cancels
        channel = getattr(getattr(parent, "task_consumer", None), "channel", None)
        sock = getattr(getattr(channel, "_in_poll", None), "_sock", None)
        if channel is None or sock is None:
            return
        try:
            host, port = sock.getsockname()[:2]
            client = channel._create_client()
            try:
                for info in client.client_list():
                    if info.get("cmd") == "brpop" and info.get("addr") == f"{host}:{port}":
                        client.client_unblock(int(info["id"]))
            finally:
                client.close()
        except Exception as exc:  # the broker is gone: nothing blocks in it either
            logger.debug("could not release the broker poll: %s", exc)


def create_worker_app(settings: Settings) -> Celery:
    """The worker's app: the shared one plus where its ready file and metrics go."""
    app = create_celery(settings)
    app.conf.service_ready_file = settings.celery_ready_file
    app.conf.service_metrics_port = settings.metrics_port if settings.metrics_enabled else None
    app.steps["worker"].add(WakeOnShutdown)
    app.steps["consumer"].add(UnblockOnStop)
    return app


def __getattr__(name: str) -> Celery:
    """``celery -A service.worker`` reads ``app``: built from the environment on first access."""
    if name == "app":
        application = create_worker_app(get_settings())
        globals()["app"] = application
        return application
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
