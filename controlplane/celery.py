"""The Celery application. Messages carry ids only; the job row in Postgres is the truth."""

import os
import sys
import uuid

from celery import Celery
from celery.signals import task_prerun
from django.db import connections

from controlplane import redis_broker

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")

# Before any broker connection: a worker's main process must outlive a Redis crash (see redis_broker).
redis_broker.install()
app = Celery("arbiter")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
def _health_check_database_connections(**_: object) -> None:
    """Django's CONN_HEALTH_CHECKS for a task, as for a request: a connection that broke since the last
    task (PostgreSQL restarted) is replaced at its first use. Celery's Django fixup, while it reuses
    connections (CELERY_DB_REUSE_MAX), never checks them: after a restart every task of that pool child
    failed with "the connection is closed" until the reuse count ran out. A task run in its caller's
    thread inside a transaction (`apply()`, eager tests) keeps the caller's connection, as Django's tests
    keep theirs across requests: closing it would end the caller's transaction."""
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()


@app.task(name="controlplane.ping")
def ping(nonce: str) -> None:
    """Leave `nonce` in Redis: proof that a real worker consumed a real task from the real broker."""
    from controlplane.redis_client import get_redis

    get_redis().set(f"arbiter:ping:{nonce}", "pong", ex=300)


def recovery_queue(default_queue: str) -> str:
    """Where jobs whose worker died are sent again; workers read it before `default_queue`."""
    return f"{default_queue}.recovery"


def worker_argv(*, queue: str, concurrency: int, name: str) -> list[str]:
    """The command line of a private Celery worker on `queue` (the tests' and the benchmarks' workers)."""
    return [
        sys.executable, "-m", "celery", "-A", "controlplane", "worker",
        "--pool", "prefork", "--concurrency", str(concurrency),
        "--queues", f"{recovery_queue(queue)},{queue}",
        "--hostname", f"{name}-{uuid.uuid4().hex[:8]}@%h", "--loglevel", "WARNING",
        "--without-gossip", "--without-mingle",
    ]  # fmt: skip
