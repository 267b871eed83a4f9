"""The worker without a broker: its Celery configuration, task registration and ready file.

The ready check is the real ``sh`` one-liner that ``docker exec`` runs, run here against real
processes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.celery_app import RECORD_TASK, create_celery
from service.config import Settings
from service.worker import clear_ready, create_worker_app, mark_ready, ready_check

DSN = "postgresql://app:pw@db:5432/appdb"
REPO = Path(__file__).resolve().parents[2]


def passes(ready_file: Path) -> bool:
    """Whether the readiness one-liner exits 0 for ``ready_file``."""
    return subprocess.run(ready_check(str(ready_file)), capture_output=True).returncode == 0


@pytest.fixture
def ready_file(tmp_path: Path) -> Path:
    return tmp_path / "worker.ready"


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A live process standing in for the worker."""
    process = subprocess.Popen(["sleep", "60"])
    yield process
    process.kill()
    process.wait()


def test_ready_while_the_writer_lives(ready_file: Path, sleeper: subprocess.Popen[bytes]) -> None:
    assert not passes(ready_file)
    mark_ready(ready_file, sleeper.pid)
    assert passes(ready_file)
    assert [p.name for p in ready_file.parent.iterdir()] == [ready_file.name]  # no .partial
    clear_ready(ready_file, sleeper.pid)
    clear_ready(ready_file, sleeper.pid)  # twice is fine
    assert not passes(ready_file)


def test_a_replaced_worker_leaves_its_successors_file_alone(
    ready_file: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    """dev mode starts the new worker before the old one has shut down (devserver --overlap):
    the old one's shutdown must not remove the file the new one wrote."""
    mark_ready(ready_file, os.getpid())  # the old worker
    mark_ready(ready_file, sleeper.pid)  # the new one, ready first
    clear_ready(ready_file, os.getpid())  # the old one's shutdown
    assert passes(ready_file)


def test_not_ready_once_the_writer_died(ready_file: Path, sleeper: subprocess.Popen[bytes]) -> None:
    mark_ready(ready_file, sleeper.pid)
    sleeper.kill()
    sleeper.wait()
    assert not passes(ready_file)


def test_a_left_over_file_never_passes_for_a_new_process_with_the_same_pid(
    ready_file: Path,
) -> None:
    """After a container restart PIDs repeat: the start time tells the processes apart."""
    pid = os.getpid()
    ready_file.write_text(f"{pid} 1\n")  # this PID, another start time
    assert not passes(ready_file)
    ready_file.write_text("garbage")
    assert not passes(ready_file)


def test_celery_delivery_settings() -> None:
    settings = Settings(
        database_url=DSN,
        celery_broker_url="redis://queue:6379/1",
        celery_visibility_timeout_s=42,
    )
    conf = create_celery(settings).conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.broker_url == "redis://queue:6379/1"
    assert conf.result_backend == "redis://queue:6379/2"
    assert conf.broker_transport_options["visibility_timeout"] == 42
    assert conf.accept_content == ["json"]


def test_worker_app_registers_the_task(tmp_path: Path) -> None:
    app = create_worker_app(Settings(database_url=DSN, celery_ready_file=str(tmp_path / "r")))
    app.loader.import_default_modules()
    assert RECORD_TASK in app.tasks
    assert app.conf.service_ready_file == str(tmp_path / "r")


def test_worker_module_reads_the_environment_on_first_use() -> None:
    """``celery -A service.worker``: importing is free; ``app`` needs AI_AGENTS_DATABASE_URL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AI_AGENTS_")}
    code = "import service.worker as w; print('imported'); w.app"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO, check=False
    )
    assert result.stdout == "imported\n"
    assert result.returncode == 1
    assert result.stderr.strip() == "configuration error: AI_AGENTS_DATABASE_URL: field required"
