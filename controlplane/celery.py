"""The Celery application. Messages carry ids only; the job row in Postgres is the truth."""

import os
import sys
import uuid

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")

app = Celery("arbiter")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


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
