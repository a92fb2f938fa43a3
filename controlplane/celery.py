"""The Celery application. Messages carry ids only; the job row in Postgres is the truth."""

import os
import sys
import uuid

from celery import Celery
from celery.signals import task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")

app = Celery("arbiter")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
def drop_broken_database_connections(**_: object) -> None:
    """A connection that failed (the database restarted) is closed before the next task, which opens a new one.

    With CELERY_DB_REUSE_MAX, Celery checks connections only every 2 x that many tasks: a worker process kept
    a dead connection after a PostgreSQL restart and failed every task (the sealer's too) for half an hour.
    Only connections that have seen an error are looked at, so a healthy one costs nothing here."""
    from django.db import connections

    for connection in connections.all(initialized_only=True):
        if connection.errors_occurred:
            connection.close_if_unusable_or_obsolete()


@app.task(name="controlplane.ping")
def ping(nonce: str) -> None:
    """Leave `nonce` in Redis: proof that a real worker consumed a real task from the real broker."""
    from controlplane.redis_client import get_redis

    get_redis().set(f"arbiter:ping:{nonce}", "pong", ex=300)


def worker_argv(*, queue: str, concurrency: int, name: str) -> list[str]:
    """The command line of a private Celery worker on `queue` (the tests' and the benchmarks' workers)."""
    return [
        sys.executable, "-m", "celery", "-A", "controlplane", "worker",
        "--pool", "prefork", "--concurrency", str(concurrency), "--queues", queue,
        "--hostname", f"{name}-{uuid.uuid4().hex[:8]}@%h", "--loglevel", "WARNING",
        "--without-gossip", "--without-mingle",
    ]  # fmt: skip
