"""End to end: a job submitted over the API with a callback URL finishes in a real worker, and the
worker posts the signed webhook, which the receiver's documented ten lines accept."""

from __future__ import annotations

import pytest
from django.conf import settings

from routing.models import WebhookDelivery
from tests.support.live import live_arbiter
from tests.support.personas import client_with
from tests.support.webhooks import Receiver, doc_verify
from tests.support.workers import wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def arbiter(django_db_setup, django_db_blocker, model_server):
    with django_db_blocker.unblock():
        yield from live_arbiter(model_server.base_url)


@pytest.mark.django_db
def test_a_callback_url_on_a_private_network_is_refused_at_submit(owner):
    # Also the django_db test that makes pytest-django create the test database for this module.
    assert owner.submit(callback_url="http://10.1.1.1/hook").status_code == 400


@pytest.mark.parametrize(
    ("content", "event", "status"),
    [
        ("[task:classification] [confidence:nano=0.95,mini=0.9,flagship=0.9] Billing?", "job.completed", "completed"),
        (
            "[task:classification] [confidence:nano=0.2,mini=0.3,flagship=0.4] Unsure",
            "job.approval_required",
            "awaiting_approval",
        ),
    ],
    ids=["completed", "held"],
)
def test_the_worker_posts_a_signed_webhook(arbiter, live_db, content, event, status):
    client = client_with(arbiter.key)
    with Receiver([200]) as receiver:
        response = client.post(
            "/api/v1/jobs",
            {
                "task_type": "classification",
                "messages": [{"role": "user", "content": content}],
                "callback_url": receiver.url,
            },
            format="json",
        )
        assert response.status_code == 201, response.json()
        job_id = response.json()["id"]
        wait_for(lambda: receiver.requests, timeout=30, message="the webhook")
    headers, body = receiver.requests[0]
    assert doc_verify()(settings.ARBITER_WEBHOOK_SECRET, headers["Arbiter-Signature"], body)
    assert headers["Arbiter-Event"] == event
    assert f'"status":"{status}"'.encode() in body and job_id.encode() in body
    delivery = wait_for(
        lambda: WebhookDelivery.objects.filter(job_id=job_id, delivered=True).first(),
        timeout=10,
        message="the delivery record",
    )
    assert (delivery.event, delivery.attempt, delivery.status_code) == (event, 1, 200)
