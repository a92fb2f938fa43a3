"""Issue 12, item 1: a held or blocked answer is never readable by the application before the decision
the policy requires — not through the job's detail, the list, its ledger events, its webhooks or the
OpenAI-compatible endpoint — and neither are the reasons quoting its values."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import openai
import pytest
from django.db import connection
from django.utils import timezone

from controlplane.roles import Role
from review.services import (
    approval_approve,
    approval_escalate,
    approval_reject,
    approvals_expire_due,
)
from routing.execute.webhooks import webhook_payload
from routing.models import ApprovalRequest, Job, JobStatus
from routing.release import released_ledger_body
from tests.support.builders import active_policy, held_job
from tests.support.factories import UserFactory
from tests.support.governed import governed
from tests.support.live import live_arbiter
from tests.support.personas import client_with, key_for
from tests.support.webhooks import Receiver
from tests.support.workers import finished, wait_for

pytestmark = pytest.mark.slow

SECRET = "held-output-webhook-secret"
REFUND_TOOL = [{"type": "function", "function": {"name": "issue_refund", "parameters": {"type": "object"}}}]
# An amount that appears nowhere but in the model's answer (and the prompt that makes the simulator say it).
AMOUNT = 73519
HELD_REFUND = f'[task:general] [confidence:mini=0.9,flagship=0.9] [call:issue_refund {{"amount": {AMOUNT}}}] refund'
BLOCKED_CALL = "[task:general] [confidence:mini=0.9,flagship=0.9] [call:exfiltrate_secret_c4f9 {}] tidy up"


def mentions(text: str, value: object) -> bool:
    """`value` as a token of its own (not inside a hex id or hash that happens to contain its digits)."""
    return re.search(rf"(?<![0-9a-zA-Z_]){re.escape(str(value))}(?![0-9a-zA-Z_])", text) is not None


def api_submit(client, setup, content: str, **fields) -> str:
    body = {
        "task_type": "general",
        "messages": [{"role": "user", "content": content}],
        "policy": setup.policy.name,
        "tools": REFUND_TOOL,
        **fields,
    }
    response = client.post("/api/v1/jobs", body, format="json")
    assert response.status_code == 201, response.json()
    return response.json()["id"]


def settled(client, job_id: str, status: str) -> dict:
    def read():
        detail = client.get(f"/api/v1/jobs/{job_id}").json()
        return detail if detail["status"] == status else None

    return wait_for(read, timeout=30, message=f"job {job_id} to be {status}")


def received(receiver: Receiver, event: str) -> dict:
    def find():
        for headers, body in receiver.requests:
            if headers.get("Arbiter-Event") == event:
                return json.loads(body)
        return None

    return wait_for(find, timeout=30, message=f"the {event} webhook")


def test_a_ledger_body_key_nobody_cleared_for_the_application_is_withheld():
    # Allow-listed, not deny-listed: a key added to an event later stays out until someone clears it.
    body = {"attempt": 2, "rules": ["refunds-over-100"], "reasons": [f"args.amount is {AMOUNT}"], "summary": "x"}
    shown = released_ledger_body("approval.requested", body)
    assert shown == {"attempt": 2, "rules": ["refunds-over-100"], "withheld": ["reasons", "summary"]}


@pytest.mark.django_db
@pytest.mark.parametrize("status", [JobStatus.AWAITING_APPROVAL, JobStatus.BLOCKED, JobStatus.REJECTED])
def test_a_webhook_of_an_unreleased_job_carries_ids_status_and_rules_never_the_answer(status):
    # Also the django_db test that makes pytest-django create the test database for this module (the
    # live server below needs it to exist before its module fixture starts).
    call = {"id": "c1", "name": "issue_refund", "arguments": {"amount": AMOUNT}}
    job = held_job(version=active_policy(), tool_calls=[call], content=f"Refunding {AMOUNT}.")
    Job.objects.filter(pk=job.pk).update(status=status, status_reason=f"args.amount is {AMOUNT}, > 100")
    job.refresh_from_db()
    payload = webhook_payload(job, "job.approval_required")
    assert payload["data"]["job"]["id"] == str(job.pk) and payload["data"]["job"]["status"] == status
    assert payload["data"]["job"]["output"] is None
    assert not mentions(json.dumps(payload), AMOUNT)


def _reject(job, reviewer, client):
    approval_reject(job=job, user=reviewer, reason=f"{AMOUNT} is far too much")


def _escalate(job, reviewer, client):
    approval_escalate(job=job, user=reviewer, reason="ask the flagship")


def _cancel(job, reviewer, client):
    assert client.post(f"/api/v1/jobs/{job.pk}/cancel", {"reason": "changed my mind"}, format="json").status_code == 200


def _expire(job, reviewer, client):
    ApprovalRequest.objects.filter(job=job).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert approvals_expire_due() >= 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("decide", "withheld"),
    [(_reject, "rejected"), (_escalate, "not_finished"), (_cancel, "cancelled"), (_expire, "expired")],
)
def test_rejecting_escalating_cancelling_or_expiring_a_hold_releases_nothing(decide, withheld):
    call = {"id": "c1", "name": "issue_refund", "arguments": {"amount": AMOUNT}}
    job = held_job(version=active_policy(), tool_calls=[call], tier="mini", content=f"Refunding {AMOUNT}.")
    client = client_with(key_for(job.application, "jobs:read", "jobs:write"))
    decide(job, UserFactory(roles=[Role.REVIEWER]), client)
    detail = client.get(f"/api/v1/jobs/{job.pk}").json()
    assert detail["result"] is None and detail["result_withheld"] == withheld
    assert not mentions(json.dumps(detail), AMOUNT)
    assert not mentions(json.dumps(client.get(f"/api/v1/jobs/{job.pk}/events").json()), AMOUNT)


@pytest.mark.django_db
def test_a_policys_explicit_approve_on_expiry_is_the_one_default_that_releases():
    job = held_job(version=active_policy(), content="label: billing")
    overdue = timezone.now() - timedelta(seconds=1)
    ApprovalRequest.objects.filter(job=job).update(on_expiry="approve", expires_at=overdue)
    assert approvals_expire_due() >= 1
    client = client_with(key_for(job.application, "jobs:read"))
    detail = client.get(f"/api/v1/jobs/{job.pk}").json()
    assert detail["status"] == JobStatus.COMPLETED and detail["result"]["output"]["content"] == "label: billing"


@pytest.fixture
def application(model_server, workers):
    setup = governed(model_server.base_url)
    workers.start(ARBITER_WEBHOOK_SECRET=SECRET)
    return setup, client_with(key_for(setup.application, "jobs:read", "jobs:write"))


def test_a_held_refund_is_unreadable_everywhere_until_two_people_approve_it(application):
    setup, client = application
    with Receiver([204]) as receiver:
        job_id = api_submit(client, setup, HELD_REFUND, callback_url=receiver.url)
        detail = settled(client, job_id, JobStatus.AWAITING_APPROVAL)

        assert detail["result"] is None
        assert detail["result_withheld"] == "awaiting_approval"
        assert detail["approval"]["rule_ids"] == ["refunds-over-100"]
        assert detail["approval"]["approvals"] == 0 and detail["approval"]["required_approvers"] == 2
        assert not mentions(json.dumps(detail), AMOUNT)  # nor in the status reason or approval reasons
        assert "held for human approval" in detail["status_reason"]

        listed = client.get("/api/v1/jobs").json()["results"]
        assert [row["id"] for row in listed] == [job_id]
        assert not mentions(json.dumps(listed), AMOUNT)

        events = client.get(f"/api/v1/jobs/{job_id}/events").json()
        assert "approval.requested" in [event["event_type"] for event in events]
        assert not mentions(json.dumps(events), AMOUNT)
        requested = next(event for event in events if event["event_type"] == "approval.requested")
        assert requested["body"]["rules"] == ["refunds-over-100"] and "reasons" in requested["body"]["withheld"]
        called = next(event for event in events if event["event_type"] == "model.called")
        assert "output" not in called["body"]

        webhook = received(receiver, "job.approval_required")
        assert webhook["data"]["job"]["output"] is None
        assert webhook["data"]["job"]["result_withheld"] == "awaiting_approval"
        assert not mentions(json.dumps(webhook), AMOUNT)

        first, second = UserFactory(roles=[Role.REVIEWER]), UserFactory(roles=[Role.REVIEWER])
        job = approval_approve(job=Job.objects.get(pk=job_id), user=first)
        detail = client.get(f"/api/v1/jobs/{job_id}").json()
        assert detail["status"] == JobStatus.AWAITING_APPROVAL and detail["approval"]["approvals"] == 1
        assert detail["result"] is None  # one of two approvals releases nothing

        approval_approve(job=job, user=second)
        detail = client.get(f"/api/v1/jobs/{job_id}").json()
        assert detail["status"] == JobStatus.COMPLETED and detail["result_withheld"] is None
        assert detail["result"]["output"]["tool_calls"][0]["arguments"] == {"amount": AMOUNT}
        completed = received(receiver, "job.completed")
        assert completed["data"]["job"]["output"]["tool_calls"][0]["arguments"] == {"amount": AMOUNT}


def test_a_blocked_tool_call_is_never_readable_nor_named_to_the_application(application):
    setup, client = application
    with Receiver([204]) as receiver:
        job_id = api_submit(client, setup, BLOCKED_CALL, callback_url=receiver.url)
        detail = settled(client, job_id, JobStatus.BLOCKED)
        assert detail["result"] is None and detail["result_withheld"] == "blocked"
        assert "not allowed by the policy" in detail["status_reason"]
        assert "exfiltrate_secret_c4f9" not in json.dumps(detail)
        events = client.get(f"/api/v1/jobs/{job_id}/events").json()
        blocked = next(event for event in events if event["event_type"] == "tool_call.blocked")
        assert blocked["body"]["blocked_tool_calls"] == 1
        assert "exfiltrate_secret_c4f9" not in json.dumps(events)
        webhook = received(receiver, "job.blocked")
        assert webhook["data"]["job"]["output"] is None and webhook["data"]["job"]["result_withheld"] == "blocked"
        assert "exfiltrate_secret_c4f9" not in json.dumps(webhook)
    # Blocked is final: the row keeps the answer for reviewers, the application never gets it.
    assert Job.objects.get(pk=job_id).result["output"]["tool_calls"][0]["name"] == "exfiltrate_secret_c4f9"


@pytest.fixture(scope="module")
def arbiter(django_db_setup, django_db_blocker, model_server):
    with django_db_blocker.unblock():
        yield from live_arbiter(model_server.base_url)
        # The server's request threads are gone, but the connections of those that answered with a
        # refusal linger, idle, and would keep the test database from being dropped at the session's end.
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() AND state = 'idle'"
            )
        connection.close()


@pytest.fixture
def sdk(arbiter, live_db) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{arbiter.url}/v1", api_key=arbiter.key, max_retries=0, timeout=60)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_the_openai_endpoint_answers_a_held_refund_with_409_and_no_output(sdk, stream):
    with pytest.raises(openai.ConflictError) as raised:
        answer = sdk.chat.completions.create(
            model="auto",
            messages=[{"role": "user", "content": HELD_REFUND}],
            tools=REFUND_TOOL,
            extra_headers={"x-arbiter-task-type": "general"},
            stream=stream,
        )
        if stream:
            list(answer)  # read to its end: nothing may have been streamed before the error
    assert raised.value.code == "approval_required"
    body = raised.value.response.text
    assert not mentions(body, AMOUNT) and "choices" not in body and "tool_calls" not in body
    job = Job.objects.get(pk=raised.value.body["job_id"])
    assert job.status == JobStatus.AWAITING_APPROVAL and job.result["output"]["tool_calls"]  # held, not lost


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_the_openai_endpoint_answers_a_blocked_call_with_403_naming_nothing_of_the_answer(sdk, stream):
    with pytest.raises(openai.PermissionDeniedError) as raised:
        answer = sdk.chat.completions.create(
            model="auto",
            messages=[{"role": "user", "content": BLOCKED_CALL}],
            tools=REFUND_TOOL,
            extra_headers={"x-arbiter-task-type": "general"},
            stream=stream,
        )
        if stream:
            list(answer)  # read to its end: nothing may have been streamed before the error
    assert raised.value.code == "tool_call_blocked"
    assert "not allowed by the policy" in raised.value.message
    assert "exfiltrate_secret_c4f9" not in raised.value.response.text


# A tool schema that accepts any key: the model chooses the keys, and may make one an e-mail address.
MAP_TOOL = [
    {
        "type": "function",
        "function": {
            "name": "issue_refund",
            "parameters": {"type": "object", "additionalProperties": {"type": "number"}},
        },
    }
]


def test_schema_violations_never_quote_the_models_keys(model_server, workers):
    """A schema violation was named by the instance path (the model's own keys). It reached Step.error,
    which the application read on a held job (steps[].error), and the ledger's confidence.scored
    `detail.invalid_tool_calls`, which was never redacted."""
    from audit.models import LedgerEvent

    setup = governed(model_server.base_url)
    workers.start()
    email = "alice.smith@example.com"
    job = finished(
        setup.submit(
            f'[task:general] [confidence:mini=0.9,flagship=0.9] [call:issue_refund {{"{email}": "x"}}] x',
            task_type="general",
            tools=MAP_TOOL,
        )
    )
    assert job.status == JobStatus.AWAITING_APPROVAL
    assert job.steps.filter(error__contains='<key> (type: "number")').exists()  # named from the schema
    assert not job.steps.filter(error__contains=email).exists()
    client = client_with(key_for(setup.application, "jobs:read"))
    detail = client.get(f"/api/v1/jobs/{job.pk}").json()
    assert detail["result"] is None
    assert {step["error"] for step in detail["steps"]} == {"withheld until the answer is released"}
    scored = [e.canonical for e in LedgerEvent.objects.filter(subject_job=str(job.pk), event_type="confidence.scored")]
    assert scored and not any(email in text for text in scored), scored


def test_a_steps_error_is_shown_once_the_answer_is_released(model_server, workers):
    from routing.decide.tool_arguments import problems

    setup = governed(model_server.base_url)
    workers.start()
    job = finished(
        setup.submit(
            '[task:general] [confidence:mini=0.9,flagship=0.9] [call:issue_refund {"note": "x"}] x',
            task_type="general",
            tools=MAP_TOOL,
        )
    )
    assert job.status == JobStatus.AWAITING_APPROVAL
    for _ in range(job.approval_requests.get().required_approvers):
        approval_approve(job=job, user=UserFactory(roles=[Role.REVIEWER]), reason="checked")
        job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED
    detail = client_with(key_for(setup.application, "jobs:read")).get(f"/api/v1/jobs/{job.pk}").json()
    expected = problems(MAP_TOOL, [{"name": "issue_refund", "arguments": {"note": "x"}}])
    assert {step["error"] for step in detail["steps"]} == {"; ".join(expected)}
