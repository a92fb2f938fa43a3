"""When a job is held, its application's reviewers are told where the application says (a chat tool's
incoming webhook): a signed `review.requested` event naming the rules, who may decide and the link — never
the held answer. Set by a policy admin, checked like a callback URL, a ledger event."""

from __future__ import annotations

import json

import pytest
from django.test import override_settings

from audit.models import LedgerEvent
from controlplane.roles import Role
from routing.execute.webhooks import REVIEW_REQUESTED, webhook_enqueue_on_commit
from routing.models import Application, Job, JobStatus, WebhookDelivery
from routing.tasks import deliver_webhook
from tests.support.builders import active_policy, held_job
from tests.support.factories import UserFactory
from tests.support.governed import governed
from tests.support.personas import client_with, key_for
from tests.support.webhooks import Receiver, doc_verify
from tests.support.workers import finished, wait_for

SECRET = "test-webhook-secret"
AMOUNT = "80417"


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def admin_client(client):
    client.force_login(UserFactory(roles=[Role.POLICY_ADMIN]))
    return client


@pytest.mark.django_db
@override_settings(ARBITER_WEBHOOK_SECRET=SECRET, ARBITER_PUBLIC_URL="https://arbiter.example")
def test_a_held_job_tells_its_reviewers_with_a_link_and_never_the_held_answer():
    job = held_job(
        version=active_policy(),
        rule="refunds-over-100",
        content=f"Refunding {AMOUNT} to the customer.",
        tool_calls=[{"id": "c1", "name": "issue_refund", "arguments": {"amount": int(AMOUNT)}}],
    )
    with Receiver([204]) as receiver:
        Application.objects.filter(pk=job.application_id).update(review_notify_url=receiver.url)
        job = Job.objects.select_related("application").get(pk=job.pk)
        webhook_enqueue_on_commit(job, REVIEW_REQUESTED)
        deliver_webhook.apply(args=[str(job.pk), REVIEW_REQUESTED])
    headers, body = receiver.requests[0]
    assert doc_verify()(SECRET, headers["Arbiter-Signature"], body)  # signed like every webhook
    assert headers["Arbiter-Event"] == REVIEW_REQUESTED
    payload = json.loads(body)
    assert payload["text"].endswith(f"https://arbiter.example/jobs/{job.pk}/")
    assert "refunds-over-100" in payload["text"]
    assert payload["data"]["approval"]["rule_ids"] == ["refunds-over-100"]
    assert payload["data"]["job"]["review_api"] == f"/api/v1/review/jobs/{job.pk}"
    assert AMOUNT not in body.decode() and "issue_refund" not in body.decode()
    assert WebhookDelivery.objects.get(job=job, event=REVIEW_REQUESTED).url == receiver.url


@pytest.mark.django_db
def test_an_admin_sets_the_address_checked_like_a_callback_and_ledgered(client, settings):
    settings.ARBITER_WEBHOOK_ALLOW_LOOPBACK = False
    application = Application.objects.create(name="refunds", slug="refunds-notify")
    admin = admin_client(client)
    url = f"/applications/{application.slug}/review-notify"
    refused = admin.post(url, {"review_notify_url": "http://127.0.0.1:9/hook"})
    assert refused.status_code == 400 and "loopback" in refused.content.decode()
    assert admin.post(url, {"review_notify_url": "not a url"}).status_code == 400
    settings.ARBITER_WEBHOOK_ALLOW_LOOPBACK = True
    assert admin.post(url, {"review_notify_url": "http://127.0.0.1:9/hook"}).status_code == 302
    assert Application.objects.get(pk=application.pk).review_notify_url == "http://127.0.0.1:9/hook"
    event = LedgerEvent.objects.filter(event_type="application.review_notify_set").order_by("-id").first()
    assert event.body == {"before": "", "url": "http://127.0.0.1:9/hook"}
    assert admin.post(url, {"review_notify_url": ""}).status_code == 302
    assert Application.objects.get(pk=application.pk).review_notify_url == ""


@pytest.mark.slow
@override_settings(ARBITER_WEBHOOK_SECRET=SECRET)
def test_the_pipeline_tells_reviewers_when_it_holds_a_job_and_not_when_it_completes_one(model_server, workers):
    setup = governed(model_server.base_url)
    app = client_with(key_for(setup.application, "jobs:write", "jobs:read", owner=UserFactory()))
    env = {"ARBITER_WEBHOOK_SECRET": SECRET}
    workers.start(**env)
    with Receiver([204, 204]) as receiver:
        Application.objects.filter(pk=setup.application.pk).update(review_notify_url=receiver.url)

        def submit(content: str) -> Job:
            body = {"task_type": "classification", "messages": [{"role": "user", "content": content}],
                    "policy": setup.policy.name}
            return finished(Job.objects.get(pk=app.post("/api/v1/jobs", body, format="json").json()["id"]))

        held = submit("[task:classification] [confidence:nano=0.2,mini=0.3,flagship=0.4] unsure")
        sure = submit("[task:classification] [confidence:nano=0.95] sure")
        assert (held.status, sure.status) == (JobStatus.AWAITING_APPROVAL, JobStatus.COMPLETED)
        wait_for(lambda: WebhookDelivery.objects.filter(job=held, event=REVIEW_REQUESTED, delivered=True).exists(),
                 message="the review request's delivery")
    events = [json.loads(body)["type"] for _, body in receiver.requests]
    assert events == [REVIEW_REQUESTED]  # only the hold; the application's own callback was not asked for
    assert not WebhookDelivery.objects.filter(job=sure).exists()
