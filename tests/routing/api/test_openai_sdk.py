"""The real `openai` SDK against a live Arbiter: completions through a policy, the route in headers."""

from __future__ import annotations

import threading
import uuid

import openai
import pytest
from django.db import connection
from django.test import Client, override_settings

from audit.models import LedgerEvent
from routing.models import Job, JobStatus
from tests.support.compat import compat
from tests.support.live import live_arbiter
from tests.support.personas import key_for

pytestmark = pytest.mark.slow

REFUND_TOOL = [{"type": "function", "function": {"name": "issue_refund", "parameters": {"type": "object"}}}]


@pytest.fixture(scope="module")
def arbiter(django_db_setup, django_db_blocker, model_server):
    with django_db_blocker.unblock():
        yield from live_arbiter(model_server.base_url)


@pytest.fixture
def sdk(arbiter, live_db) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{arbiter.url}/v1", api_key=arbiter.key, max_retries=0, timeout=60)


def ask(sdk: openai.OpenAI, content: str, *, model: str = "auto", task_type: str = "classification", **fields):
    return sdk.chat.completions.with_raw_response.create(
        model=model,
        messages=[{"role": "user", "content": content}],
        extra_headers={"x-arbiter-task-type": task_type},
        **fields,
    )


@pytest.mark.django_db
def test_chat_completions_without_a_key_is_401_in_openai_form(client):
    # Also the django_db test that makes pytest-django create the test database for this module.
    response = client.post("/v1/chat/completions", {"model": "auto", "messages": []}, content_type="application/json")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
    assert response.json()["error"]["type"] == "authentication_error"


@compat("openai", "call", "`chat.completions.create`")
@compat("openai", "route headers", "`with_raw_response.headers`")
def test_a_confident_answer_comes_from_nano_with_the_route_in_the_headers(sdk, arbiter):
    raw = ask(sdk, "[task:classification] [confidence:nano=0.95,mini=0.9,flagship=0.9] Billing or tech?")
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content
    assert completion.choices[0].finish_reason == "stop"
    job = Job.objects.get(pk=raw.headers["x-arbiter-job-id"])
    assert job.application == arbiter.setup.application and job.status == JobStatus.COMPLETED
    assert job.task_type == "classification"
    assert raw.headers["x-arbiter-final-tier"] == "nano"
    assert raw.headers["x-arbiter-escalations"] == "0"
    assert raw.headers["x-arbiter-policy-version"] == f"{arbiter.setup.policy.name}@v1"
    from audit.models import LedgerEvent

    decision = LedgerEvent.objects.get(pk=int(raw.headers["x-arbiter-decision-id"]))
    assert decision.event_type == "route.decided" and decision.subject_job == str(job.pk)
    assert decision.body["plan"]["rule_id"] == "cheap-first"
    step = job.steps.get()
    assert completion.usage.prompt_tokens == step.prompt_tokens
    assert completion.usage.total_tokens == step.prompt_tokens + step.completion_tokens


def test_an_unsure_answer_escalates_and_usage_sums_every_step(sdk, arbiter):
    raw = sdk.chat.completions.with_raw_response.create(
        model=f"arbiter/{arbiter.setup.policy.name}",
        messages=[{"role": "user", "content": "[task:classification] [confidence:nano=0.5,mini=0.6,flagship=0.9] Q?"}],
        metadata={"task_type": "classification", "labels": '{"team": "support"}'},
    )
    completion = raw.parse()
    assert raw.headers["x-arbiter-final-tier"] == "flagship"
    assert raw.headers["x-arbiter-escalations"] == "2"
    job = Job.objects.get(pk=raw.headers["x-arbiter-job-id"])
    assert job.labels == {"team": "support"}
    steps = list(job.steps.all())
    assert len(steps) == 3
    assert completion.usage.prompt_tokens == sum(step.prompt_tokens for step in steps)
    assert completion.usage.completion_tokens == sum(step.completion_tokens for step in steps)


@compat("openai", "tools", "`tools=`")
def test_tool_calls_come_back_in_openai_form(sdk):
    completion = ask(
        sdk,
        '[task:general] [confidence:mini=0.9,flagship=0.9] [call:issue_refund {"amount": 50}] refund please',
        task_type="general",
        tools=REFUND_TOOL,
    ).parse()
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls[0].function.name == "issue_refund"
    assert '"amount": 50' in choice.message.tool_calls[0].function.arguments.replace('":50', '": 50')


def test_a_held_job_is_a_409_approval_required_naming_the_job(sdk):
    with pytest.raises(openai.ConflictError) as raised:
        ask(sdk, "[task:classification] [confidence:nano=0.2,mini=0.3,flagship=0.4] Unsure")
    error = raised.value.body
    assert raised.value.code == "approval_required"
    job = Job.objects.get(pk=error["job_id"])
    assert job.status == JobStatus.AWAITING_APPROVAL
    assert error["job_url"] == f"/api/v1/jobs/{job.pk}"
    assert raised.value.response.headers["x-arbiter-job-id"] == str(job.pk)


def test_a_blocked_tool_call_is_a_403_tool_call_blocked(sdk):
    with pytest.raises(openai.PermissionDeniedError) as raised:
        ask(
            sdk,
            "[task:general] [confidence:mini=0.9,flagship=0.9] [call:delete_everything {}] tidy up",
            task_type="general",
            tools=REFUND_TOOL,
        )
    assert raised.value.code == "tool_call_blocked"
    # The tool's name is part of the model's answer, which a block never releases (issue 12, item 1).
    assert "not allowed by the policy" in raised.value.message
    assert "delete_everything" not in raised.value.response.text


def test_an_unknown_model_is_404_model_not_found(sdk):
    with pytest.raises(openai.NotFoundError) as raised:
        sdk.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert raised.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        sdk.chat.completions.create(model="arbiter/no-such-policy", messages=[{"role": "user", "content": "hi"}])


def test_a_bad_key_is_an_authentication_error(arbiter, live_db):
    client = openai.OpenAI(base_url=f"{arbiter.url}/v1", api_key="arb_nope_nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as raised:
        client.models.list()
    assert raised.value.code == "invalid_api_key"


def test_models_lists_auto_and_the_policies(sdk, arbiter):
    ids = [model.id for model in sdk.models.list()]
    assert "auto" in ids
    assert f"arbiter/{arbiter.setup.policy.name}" in ids


def test_the_request_thread_runs_the_job_itself_with_the_workers_code(sdk, arbiter):
    raw = ask(sdk, "[task:classification] [confidence:nano=0.3,mini=0.95] escalates once, inline")
    job = Job.objects.get(pk=raw.headers["x-arbiter-job-id"])
    assert job.status == JobStatus.COMPLETED and job.attempt == 1
    assert job.claimed_by.startswith("web@")  # not a Celery worker
    assert raw.headers["x-arbiter-final-tier"] == "mini" and raw.headers["x-arbiter-escalations"] == "1"
    types = list(
        LedgerEvent.objects.filter(subject_job=str(job.pk)).order_by("id").values_list("event_type", "actor_id")
    )
    assert [event for event, _ in types] == [
        "job.submitted",
        "route.decided",
        "model.called",
        "confidence.scored",
        "job.escalated",
        "model.called",
        "confidence.scored",
        "job.completed",
    ]
    assert {actor for event, actor in types if event != "job.submitted"} == {job.claimed_by}


def test_a_bug_in_the_inline_run_hands_the_job_to_a_worker_and_still_answers(sdk, arbiter, monkeypatch):
    from routing.api import openai as endpoint

    def broken(**kwargs):
        raise RuntimeError("a bug in the pipeline")

    monkeypatch.setattr(endpoint, "job_run", broken)
    raw = ask(sdk, "[task:classification] [confidence:nano=0.95] the worker takes over")
    assert raw.parse().choices[0].message.content
    job = Job.objects.get(pk=raw.headers["x-arbiter-job-id"])
    assert job.status == JobStatus.COMPLETED
    assert not job.claimed_by.startswith("web@")  # a Celery worker answered


def test_with_inline_off_a_celery_worker_runs_the_job(sdk, arbiter):
    with override_settings(ARBITER_OPENAI_INLINE=False):
        raw = ask(sdk, "[task:classification] [confidence:nano=0.95] through the broker")
    job = Job.objects.get(pk=raw.headers["x-arbiter-job-id"])
    assert job.status == JobStatus.COMPLETED
    assert job.claimed_by and not job.claimed_by.startswith("web@")


def test_a_job_that_does_not_finish_in_time_is_a_504_naming_the_job(sdk, arbiter):
    from controlplane.celery import app as celery_app

    celery_app.conf.task_default_queue = f"nobody-listens-{uuid.uuid4().hex[:8]}"
    try:
        with (
            override_settings(ARBITER_OPENAI_WAIT_S=0.3, ARBITER_OPENAI_INLINE=False),
            pytest.raises(openai.InternalServerError) as raised,
        ):
            ask(sdk, "[task:classification] [confidence:nano=0.95] never picked up")
    finally:
        celery_app.conf.task_default_queue = arbiter.queue
    assert raised.value.status_code == 504
    assert raised.value.code == "timeout"
    assert f"/api/v1/jobs/{raised.value.body['job_id']}" in raised.value.message


def test_fifty_concurrent_submissions_with_one_idempotency_key_make_one_job(arbiter, live_db):
    raw = key_for(arbiter.setup.application, "jobs:write")
    body = {
        "task_type": "classification",
        "messages": [{"role": "user", "content": "once"}],
        "policy": arbiter.setup.policy.name,
    }
    idempotency_key = f"the-one-{uuid.uuid4().hex}"
    barrier = threading.Barrier(50)
    answers: list[tuple[int, str]] = []

    def submit() -> None:
        client = Client(HTTP_AUTHORIZATION=f"Bearer {raw}")
        barrier.wait()
        try:
            response = client.post(
                "/api/v1/jobs", body, content_type="application/json", HTTP_IDEMPOTENCY_KEY=idempotency_key
            )
            answers.append((response.status_code, response.json()["id"]))
        finally:
            connection.close()

    threads = [threading.Thread(target=submit) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(status for status, _ in answers) == [200] * 49 + [201]
    assert len({job_id for _, job_id in answers}) == 1
    assert Job.objects.filter(application=arbiter.setup.application, idempotency_key=idempotency_key).count() == 1


def test_chat_completions_conform_to_the_schema(arbiter, live_db, settings):
    from tests.support.schema import schemathesis_run

    settings.ARBITER_RATE_LIMIT_PER_MINUTE = 0
    failures, ran = schemathesis_run({"openai_chat_completions"}, f"Bearer {arbiter.key}")
    assert ran == 1
    assert not failures, "\n\n".join(failures)
