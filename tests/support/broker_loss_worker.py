"""The Celery app for tests/controlplane/test_broker_loss.py's worker: Arbiter's own app and broker
settings, plus two tasks that need neither the database nor Redis — one that holds its message
unacknowledged for a while (acks_late), one that leaves a file to show the worker consumes.

ARBITER_TEST_WITHOUT_BROKER_WORKAROUND=1 puts kombu's own Redis transport back, to show that the
test's broker loss does kill a worker without controlplane.redis_broker.
"""

import os
import time
from pathlib import Path

import kombu.transport

from controlplane.celery import app

if os.environ.get("ARBITER_TEST_WITHOUT_BROKER_WORKAROUND") == "1":
    kombu.transport.TRANSPORT_ALIASES["redis"] = "kombu.transport.redis:Transport"
    kombu.transport._transport_cache.pop("redis", None)


@app.task(name="tests.hold")
def hold(marker: str, seconds: float) -> None:
    Path(marker).write_text("started")
    time.sleep(seconds)


@app.task(name="tests.touch")
def touch(marker: str) -> None:
    Path(marker).write_text("done")
