"""The local model server and real Celery workers on a private queue, and waiting for what they do.

Tests using them commit for real (a worker in another process must see the rows), so they do not run in
pytest-django's per-test transaction. The ledger refuses TRUNCATE, so the tables are never flushed:
every test makes its own application, catalog and policy with unique names and looks only at those.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from django.db import connection

from controlplane.celery import worker_argv
from modelserver import ModelServer
from routing.execute.sweeper import jobs_redispatch_stale
from routing.models import Job, JobStatus

BASE_DIR = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def model_server() -> Iterator[ModelServer]:
    """The local OpenAI-compatible model server (synthetic mode), one for the whole session."""
    with ModelServer(latency_scale=0, seed=7) as server:
        yield server


def database_url_for_workers() -> str:
    database = connection.settings_dict
    user = quote(database["USER"] or "")
    password = f":{quote(database['PASSWORD'])}" if database["PASSWORD"] else ""
    host = database["HOST"] or ""
    name = database["NAME"]
    if host.startswith("/"):
        return f"postgresql://{user}{password}@/{name}?host={host}"
    port = f":{database['PORT']}" if database["PORT"] else ""
    return f"postgresql://{user}{password}@{host}{port}/{name}"


class Workers:
    """Real `celery worker` processes on a queue private to this test session."""

    def __init__(self, queue: str, env: dict[str, str]):
        self.queue = queue
        self.env = env
        self.processes: list[subprocess.Popen] = []

    def start(self, count: int = 1, concurrency: int = 1, **extra_env: str) -> list[subprocess.Popen]:
        started = []
        for _ in range(count):
            process = subprocess.Popen(
                [*worker_argv(queue=self.queue, concurrency=concurrency, name="test"), "--without-heartbeat"],
                cwd=BASE_DIR,
                env={**self.env, **extra_env},
                start_new_session=True,
            )
            self.processes.append(process)
            started.append(process)
        return started

    def stop(self, process: subprocess.Popen | None = None, sig: int = signal.SIGTERM) -> None:
        for item in [process] if process else list(self.processes):
            if item.poll() is None:
                os.killpg(item.pid, sig)
                try:
                    item.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(item.pid, signal.SIGKILL)
                    item.wait(timeout=10)
            if item in self.processes:
                self.processes.remove(item)


@pytest.fixture
def workers(live_db) -> Iterator[Workers]:
    from controlplane.celery import app as celery_app

    queue = f"arbiter-test-{uuid.uuid4().hex[:8]}"
    previous_queue = celery_app.conf.task_default_queue
    celery_app.conf.task_default_queue = queue
    env = {
        **os.environ,
        "DATABASE_URL": database_url_for_workers(),
        "ARBITER_QUEUE": queue,
        "ARBITER_RETRY_BASE_S": "0.05",
        "ARBITER_PROVIDER_TIMEOUT_S": "5",
        "DJANGO_SETTINGS_MODULE": "controlplane.settings",
    }
    from django.conf import settings

    env.setdefault("REDIS_URL", settings.REDIS_URL)
    pool = Workers(queue, env)
    yield pool
    pool.stop()
    celery_app.conf.task_default_queue = previous_queue


@pytest.fixture
def no_jobs_left_behind(live_db) -> None:
    """For a test of the sweeper: end what earlier tests left unfinished (a job whose worker they stopped).

    The sweeper is global and the tables are never flushed. Left alone, such a job would be sent by this
    test's sweeps to this test's workers, run through this test's deployments (the only enabled ones, see
    `governed`) and counted with this test's jobs: a kept lease looked lost, a provider call looked paid
    twice. Set aside without a ledger event: they belong to tests that are over."""
    Job.objects.filter(status__in=[JobStatus.QUEUED, JobStatus.RUNNING]).update(
        status=JobStatus.FAILED, status_reason="left unfinished by an earlier test", lease_expires_at=None
    )


def wait_for(predicate, timeout: float = 30, interval: float = 0.1, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {message}")


FINISHED = {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.BLOCKED, JobStatus.AWAITING_APPROVAL, JobStatus.REJECTED}


def finished(job: Job, timeout: float = 30) -> Job:
    return wait_for(
        lambda: (fresh := Job.objects.get(pk=job.pk)).status in FINISHED and fresh,
        timeout=timeout,
        message=f"job {job.pk} to finish",
    )


def swept(job: Job) -> bool:
    """One sweep, as beat runs it (`routing.execute.sweeper`), from this process: True when it sent `job` again.

    The sweeper is global and the tables are never flushed, so unfinished jobs that earlier tests left behind
    are swept too (and counted in what it returns): a test asks whether its own job was sent, never how many
    were found. Counting them made a lease that was kept look lost, and a sweep that missed the job pass."""
    before = Job.objects.values_list("dispatched_at", flat=True).get(pk=job.pk)
    jobs_redispatch_stale()
    return Job.objects.values_list("dispatched_at", flat=True).get(pk=job.pk) != before


def events(job: Job) -> list:
    from audit.selectors import events_for_job

    return list(events_for_job(job.pk))


def event_types(job: Job) -> list[str]:
    return [event.event_type for event in events(job)]
