"""Signed webhooks: the receiver's ten lines from WEBHOOKS.md verify a real delivery; retries with
backoff; every attempt recorded; unsafe addresses refused at submit and again at delivery."""

from __future__ import annotations

import socket

import pytest
from django.test import override_settings

from routing.execute.webhooks import UnsafeCallbackUrl, callback_url_check, webhook_deliver, webhook_enqueue_on_commit
from routing.models import Job, WebhookDelivery
from routing.tasks import deliver_webhook
from tests.support.webhooks import Receiver, doc_verify

pytestmark = pytest.mark.django_db

SECRET = "test-webhook-secret"


def completed_job(owner, url: str) -> Job:
    response = owner.submit(callback_url=url)
    assert response.status_code == 201, response.json()
    job = Job.objects.get(pk=response.json()["id"])
    Job.objects.filter(pk=job.pk).update(status="completed", result={"output": {"content": "billing"}})
    return job


@override_settings(ARBITER_WEBHOOK_SECRET=SECRET)
def test_a_delivery_is_signed_and_the_documented_snippet_verifies_it(owner):
    with Receiver([204]) as receiver:
        job = completed_job(owner, receiver.url)
        outcome = webhook_deliver(job_id=str(job.pk), event="job.completed")
    assert outcome.delivered
    headers, body = receiver.requests[0]
    verify = doc_verify()
    assert verify(SECRET, headers["Arbiter-Signature"], body)
    assert not verify("another secret", headers["Arbiter-Signature"], body)
    assert not verify(SECRET, headers["Arbiter-Signature"], body.replace(b"billing", b"refund!"))
    assert headers["Arbiter-Event"] == "job.completed"
    assert headers["Arbiter-Delivery"] == f"{job.pk}:job.completed"
    assert headers["Host"] == f"localhost:{receiver.server.server_address[1]}"
    assert b'"content":"billing"' in body
    delivery = WebhookDelivery.objects.get(job=job)
    assert (delivery.attempt, delivery.status_code, delivery.delivered) == (1, 204, True)


@override_settings(ARBITER_WEBHOOK_SECRET=SECRET)
def test_an_old_signature_is_refused_by_the_snippet(owner):
    from routing.execute.webhooks import signature_header

    header = signature_header(b"{}", secret=SECRET, timestamp=1_000_000_000)
    assert not doc_verify()(SECRET, header, b"{}")


@override_settings(ARBITER_WEBHOOK_SECRET=SECRET, ARBITER_WEBHOOK_MAX_ATTEMPTS=3)
def test_a_failing_receiver_is_retried_up_to_the_limit_and_every_attempt_recorded(owner):
    with Receiver([500]) as receiver:
        job = completed_job(owner, receiver.url)
        deliver_webhook.apply(args=[str(job.pk), "job.completed"])
    attempts = list(WebhookDelivery.objects.filter(job=job).order_by("attempt"))
    assert [(d.attempt, d.status_code, d.delivered) for d in attempts] == [
        (1, 500, False),
        (2, 500, False),
        (3, 500, False),
    ]
    assert [h["Arbiter-Attempt"] for h, _ in receiver.requests] == ["1", "2", "3"]


@override_settings(ARBITER_WEBHOOK_SECRET=SECRET)
def test_a_retry_that_succeeds_stops_and_is_never_sent_again(owner):
    with Receiver([503, 200]) as receiver:
        job = completed_job(owner, receiver.url)
        deliver_webhook.apply(args=[str(job.pk), "job.completed"])
        deliver_webhook.apply(args=[str(job.pk), "job.completed"])  # a redelivered message
    assert [(d.attempt, d.delivered) for d in WebhookDelivery.objects.filter(job=job).order_by("attempt")] == [
        (1, False),
        (2, True),
    ]
    assert len(receiver.requests) == 2


def test_the_backoff_grows_and_is_capped():
    from routing.execute.webhooks import retry_countdown

    assert 4 <= retry_countdown(1) <= 6
    assert 32 <= retry_countdown(4) <= 48
    assert retry_countdown(20) <= 900 * 1.2


@pytest.fixture
def resolvable_example_host(monkeypatch):
    real = socket.getaddrinfo

    def resolve(host, *args, **kwargs):
        if host == "hooks.example.test":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", 80))]
        if host == "mixed.example.test":
            return [
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", 80)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.1.2.3", 80)),
            ]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)


@override_settings(ARBITER_WEBHOOK_SECRET=SECRET)
def test_a_host_that_rebinds_to_the_metadata_address_is_refused_at_delivery(
    owner, monkeypatch, resolvable_example_host
):
    job = completed_job(owner, "http://hooks.example.test/arbiter")  # public at submit time
    real = socket.getaddrinfo

    def rebound(host, *args, **kwargs):
        if host == "hooks.example.test":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", 80))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebound)
    outcome = webhook_deliver(job_id=str(job.pk), event="job.completed")
    assert not outcome.delivered and not outcome.retry
    delivery = WebhookDelivery.objects.get(job=job)
    assert "link-local" in delivery.error and delivery.status_code is None


def test_every_resolved_address_is_checked(resolvable_example_host):
    callback_url_check("https://hooks.example.test/x")
    with pytest.raises(UnsafeCallbackUrl, match=r"10\.1\.2\.3"):
        callback_url_check("https://mixed.example.test/x")


def test_a_host_that_does_not_resolve_is_refused():
    with pytest.raises(UnsafeCallbackUrl, match="does not resolve"):
        callback_url_check("https://no-such-host.invalid/x")


@pytest.mark.parametrize("url", ["http://[::ffff:169.254.169.254]/", "http://0.0.0.0/", "http://user:pw@localhost/"])
def test_disguised_and_credentialed_urls_are_refused(url):
    with override_settings(ARBITER_WEBHOOK_ALLOW_PRIVATE=True), pytest.raises(UnsafeCallbackUrl):
        callback_url_check(url)


def test_private_addresses_are_allowed_only_when_configured():
    with override_settings(ARBITER_WEBHOOK_ALLOW_PRIVATE=True):
        callback_url_check("http://10.0.0.5/hook")
    with pytest.raises(UnsafeCallbackUrl):
        callback_url_check("http://10.0.0.5/hook")


@override_settings(ARBITER_WEBHOOK_SECRET=None)
def test_without_a_secret_nothing_is_sent_unsigned(owner):
    with Receiver([200]) as receiver:
        job = completed_job(owner, receiver.url)
        outcome = webhook_deliver(job_id=str(job.pk), event="job.completed")
    assert not outcome.delivered and not outcome.retry
    assert receiver.requests == []
    assert "ARBITER_WEBHOOK_SECRET" in WebhookDelivery.objects.get(job=job).error


def test_enqueue_waits_for_commit_and_skips_jobs_without_a_callback(owner, django_capture_on_commit_callbacks):
    with_callback = completed_job(owner, "http://localhost:9/hook")
    without = Job.objects.get(pk=owner.submit().json()["id"])
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        webhook_enqueue_on_commit(with_callback, "job.completed")
        webhook_enqueue_on_commit(without, "job.completed")
    assert len(callbacks) == 1


@override_settings(ARBITER_WEBHOOK_SECRET=SECRET, ARBITER_WEBHOOK_MAX_ATTEMPTS=2)
def test_the_outbox_row_commits_with_the_event_and_ends_with_its_delivery(owner):
    from routing.models import WebhookOutbox

    with Receiver([500, 500]) as receiver:
        job = completed_job(owner, receiver.url)
        webhook_enqueue_on_commit(job, "job.completed")
        webhook_enqueue_on_commit(job, "job.completed")  # the same event again: still one row
        pending = WebhookOutbox.objects.get(job=job, event="job.completed")
        assert pending.done_at is None
        # First attempt fails: the row waits for the retry (due later), second fails: out of attempts, done.
        deliver_webhook.apply(args=[str(job.pk), "job.completed"])
    row = WebhookOutbox.objects.get(pk=pending.pk)
    assert row.done_at is not None and row.due_at > pending.due_at
    assert len(receiver.requests) == 2
    # A job without a callback URL has nothing to tell: no row.
    without = Job.objects.get(pk=owner.submit().json()["id"])
    webhook_enqueue_on_commit(without, "job.completed")
    assert not WebhookOutbox.objects.filter(job=without).exists()


@override_settings(ARBITER_WEBHOOK_SECRET=SECRET, ARBITER_WEBHOOK_MAX_ATTEMPTS=3)
def test_an_event_whose_deliveries_keep_dying_is_given_up_instead_of_re_sent_for_ever(owner):
    from routing.models import WebhookOutbox

    with Receiver([500, 500, 500, 500]) as receiver:
        job = completed_job(owner, receiver.url)
        webhook_enqueue_on_commit(job, "job.completed")
        # One delivery ends normally (recorded, retry due), then three begin and die before recording anything,
        # as a worker killed mid-POST would: each one counted as begun, none as an attempt.
        assert webhook_deliver(job_id=str(job.pk), event="job.completed").retry
        WebhookOutbox.objects.filter(job=job).update(started=1 + 3)
        deliver_webhook.apply(args=[str(job.pk), "job.completed"])
    assert len(receiver.requests) == 1  # the receiver is not called again
    attempts = list(WebhookDelivery.objects.filter(job=job).order_by("attempt").values_list("attempt", "error"))
    assert attempts == [
        (1, "the receiver answered 500"),
        (2, "given up: 3 deliveries ended before recording an attempt (a crash each time)"),
    ]
    # The row is done, so the sweeper never sends it again.
    assert WebhookOutbox.objects.get(job=job).done_at is not None


@override_settings(ARBITER_WEBHOOK_SECRET=SECRET, ARBITER_WEBHOOK_MAX_ATTEMPTS=3)
def test_deliveries_that_record_their_attempts_are_not_counted_as_crashes(owner):
    from routing.models import WebhookOutbox

    with Receiver([500, 500, 200]) as receiver:
        job = completed_job(owner, receiver.url)
        webhook_enqueue_on_commit(job, "job.completed")
        outcomes = [webhook_deliver(job_id=str(job.pk), event="job.completed") for _ in range(3)]
    assert [outcome.delivered for outcome in outcomes] == [False, False, True]
    assert WebhookOutbox.objects.get(job=job).started == 3
    assert len(receiver.requests) == 3
