"""One call, one job, on the real `openai` SDK's default retry settings (two retries): answers not worth
retrying say `x-should-retry: false`, and a retry of a request sent without an idempotency key finds the
job of the first try (routing.services.implicit_idempotency)."""

from __future__ import annotations

import time
import uuid

import openai
import pytest
from django.test import override_settings

from routing.models import ApprovalRequest, Job, JobStatus
from tests.support.live import live_arbiter

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def arbiter(django_db_setup, django_db_blocker, model_server):
    with django_db_blocker.unblock():
        yield from live_arbiter(model_server.base_url)


class Sent:
    """Counts the HTTP requests the SDK sends (its retries included)."""

    def __init__(self) -> None:
        self.requests = 0

    def __call__(self, request: object) -> None:
        self.requests += 1


def sdk_with_default_retries(arbiter, sent: Sent, **options) -> openai.OpenAI:
    http_client = openai.DefaultHttpxClient(event_hooks={"request": [sent]})
    return openai.OpenAI(base_url=f"{arbiter.url}/v1", api_key=arbiter.key, http_client=http_client, **options)


def jobs_asking(arbiter, content: str):
    return Job.objects.filter(application=arbiter.setup.application, request__messages__0__content=content)


def ask(client: openai.OpenAI, content: str, *, headers: dict[str, str] | None = None, **options):
    return client.chat.completions.with_raw_response.create(
        model="auto",
        messages=[{"role": "user", "content": content}],
        extra_headers={"x-arbiter-task-type": "classification", **(headers or {})},
        **options,
    )


@pytest.mark.django_db
def test_without_a_key_the_endpoint_still_answers_401_not_worth_a_retry(client):
    # Also the django_db test that makes pytest-django create the test database for this module.
    response = client.post("/v1/chat/completions", {"model": "auto", "messages": []}, content_type="application/json")
    assert response.status_code == 401
    assert response["x-should-retry"] == "false"


def test_a_held_call_makes_one_held_job_and_the_sdk_raises_once(arbiter, live_db):
    sent = Sent()
    content = f"[task:classification] [confidence:nano=0.2,mini=0.3,flagship=0.4] unsure {uuid.uuid4().hex}"
    with pytest.raises(openai.ConflictError) as raised:
        ask(sdk_with_default_retries(arbiter, sent), content)
    assert raised.value.code == "approval_required"
    assert raised.value.response.headers["x-should-retry"] == "false"
    assert sent.requests == 1  # the SDK retries a 409 unless told not to
    job = jobs_asking(arbiter, content).get()
    assert job.status == JobStatus.AWAITING_APPROVAL
    assert ApprovalRequest.objects.filter(job=job).count() == 1
    assert raised.value.body["job_id"] == str(job.pk)


def test_a_blocked_call_is_not_retried(arbiter, live_db):
    sent = Sent()
    content = f"[task:general] [confidence:mini=0.9,flagship=0.9] [call:delete_everything {{}}] {uuid.uuid4().hex}"
    tools = [{"type": "function", "function": {"name": "issue_refund", "parameters": {"type": "object"}}}]
    with pytest.raises(openai.PermissionDeniedError) as raised:
        ask(sdk_with_default_retries(arbiter, sent), content, tools=tools)
    assert raised.value.response.headers["x-should-retry"] == "false"
    assert sent.requests == 1
    assert jobs_asking(arbiter, content).count() == 1


def test_a_5xx_retried_by_the_sdk_finds_the_job_of_the_first_try(arbiter, live_db, monkeypatch):
    from routing.api import openai as endpoint

    answer = endpoint.chat_completion
    failures = []

    def fails_once(job):
        if not failures:
            failures.append(job.pk)
            raise RuntimeError("the web process broke after the job had finished")
        return answer(job)

    monkeypatch.setattr(endpoint, "chat_completion", fails_once)
    sent = Sent()
    content = f"[task:classification] [confidence:nano=0.95] answered after a 500 {uuid.uuid4().hex}"
    raw = ask(sdk_with_default_retries(arbiter, sent), content)
    assert sent.requests == 2  # the first try answered 500, the SDK retried
    job = jobs_asking(arbiter, content).get()
    assert failures == [job.pk]
    assert raw.headers["x-arbiter-job-id"] == str(job.pk)
    assert raw.parse().choices[0].message.content
    assert job.status == JobStatus.COMPLETED and job.attempt == 1  # run once, answered twice


def test_a_timed_out_wait_retried_by_the_sdk_waits_for_the_same_job(arbiter, live_db):
    from controlplane.celery import app as celery_app

    sent = Sent()
    content = f"[task:classification] [confidence:nano=0.95] nobody picks this up {uuid.uuid4().hex}"
    celery_app.conf.task_default_queue = f"nobody-listens-{uuid.uuid4().hex[:8]}"
    try:
        with (
            override_settings(ARBITER_OPENAI_WAIT_S=0.3, ARBITER_OPENAI_INLINE=False),
            pytest.raises(openai.InternalServerError) as raised,
        ):
            ask(sdk_with_default_retries(arbiter, sent), content)
    finally:
        celery_app.conf.task_default_queue = arbiter.queue
    assert raised.value.status_code == 504
    assert "x-should-retry" not in raised.value.response.headers  # worth a retry: it finds the same job
    assert sent.requests == 3  # the first try and the SDK's two retries
    job = jobs_asking(arbiter, content).get()
    assert raised.value.body["job_id"] == str(job.pk)


def test_a_client_timeout_retried_by_the_sdk_waits_for_the_same_job(arbiter, live_db, model_server):
    nano = arbiter.setup.deployments["nano"].model
    model_server.set_faults(nano, slow_ms=2000)
    sent = Sent()
    content = f"[task:classification] [confidence:nano=0.95] slower than the client waits {uuid.uuid4().hex}"
    try:
        raw = ask(sdk_with_default_retries(arbiter, sent, timeout=1.0), content)
    finally:
        model_server.reset_faults(nano)
    assert sent.requests >= 2  # the first try timed out on the client's side; the SDK retried
    job = jobs_asking(arbiter, content).get()
    assert raw.headers["x-arbiter-job-id"] == str(job.pk)
    assert raw.parse().choices[0].message.content
    assert job.status == JobStatus.COMPLETED and job.attempt == 1 and job.steps.count() == 1


def test_an_identical_call_after_the_window_is_a_new_job(arbiter, live_db):
    content = f"[task:classification] [confidence:nano=0.95] asked twice on purpose {uuid.uuid4().hex}"
    client = sdk_with_default_retries(arbiter, Sent())
    with override_settings(ARBITER_OPENAI_IMPLICIT_IDEMPOTENCY_S=1):
        first = ask(client, content).headers["x-arbiter-job-id"]
        again = ask(client, content).headers["x-arbiter-job-id"]  # within the window: the same call
        time.sleep(1.1)
        later = ask(client, content).headers["x-arbiter-job-id"]
    assert first == again
    assert later != first
    assert jobs_asking(arbiter, content).count() == 2


def test_distinct_idempotency_keys_make_distinct_jobs_of_identical_requests(arbiter, live_db):
    content = f"[task:classification] [confidence:nano=0.95] two on purpose {uuid.uuid4().hex}"
    client = sdk_with_default_retries(arbiter, Sent())
    ids = {
        ask(client, content, headers={"Idempotency-Key": uuid.uuid4().hex}).headers["x-arbiter-job-id"]
        for _ in range(2)
    }
    assert len(ids) == 2
    assert jobs_asking(arbiter, content).count() == 2


def test_with_the_window_off_every_call_is_a_job(arbiter, live_db):
    content = f"[task:classification] [confidence:nano=0.95] window off {uuid.uuid4().hex}"
    client = sdk_with_default_retries(arbiter, Sent())
    with override_settings(ARBITER_OPENAI_IMPLICIT_IDEMPOTENCY_S=0):
        ids = {ask(client, content).headers["x-arbiter-job-id"] for _ in range(2)}
    assert len(ids) == 2


def test_the_async_sdk_too_makes_one_held_job_of_a_held_call(arbiter, live_db):
    import asyncio

    sent = Sent()

    async def hook(request) -> None:
        sent(request)

    async def call() -> None:
        http_client = openai.DefaultAsyncHttpxClient(event_hooks={"request": [hook]})
        url = f"{arbiter.url}/v1"
        async with openai.AsyncOpenAI(base_url=url, api_key=arbiter.key, http_client=http_client) as sdk:
            await sdk.chat.completions.create(
                model="auto",
                messages=[{"role": "user", "content": content}],
                extra_headers={"x-arbiter-task-type": "classification"},
            )

    content = f"[task:classification] [confidence:nano=0.1,mini=0.2,flagship=0.3] async unsure {uuid.uuid4().hex}"
    with pytest.raises(openai.ConflictError):
        asyncio.run(call())
    assert sent.requests == 1
    job = jobs_asking(arbiter, content).get()
    assert job.status == JobStatus.AWAITING_APPROVAL
    assert ApprovalRequest.objects.filter(job=job).count() == 1
