"""Approval grants against a live Arbiter: a refund the policy holds is approved by two reviewers through
the review service; the retried chat completion and the jobs API carry a signed grant for the call; the
verifier printed in GRANTS.md accepts it and refuses any other call; the application redeems it once.
Every refusal has its own stable code, a refused attempt does not use the grant up, another
application's grant is not found, and of concurrent redemptions exactly one wins."""

from __future__ import annotations

import base64
import importlib.util
import json
import re
import threading
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import openai
import pytest
from django.db import connections, transaction
from django.utils import timezone

from audit.checkpoints import public_key_b64
from audit.models import LedgerEvent
from controlplane.roles import Role
from review.services import approval_approve, approval_override
from routing.models import ApprovalGrant, Job, JobStatus, PolicyVersion
from tests.support.builders import held_job
from tests.support.factories import ApplicationFactory, UserFactory
from tests.support.governed import REFUND_TOOL
from tests.support.live import live_arbiter
from tests.support.personas import key_for
from tests.support.workers import wait_for

pytestmark = pytest.mark.slow

GRANTS_DOC = Path(__file__).resolve().parents[3] / "routing" / "api" / "GRANTS.md"
REFUND_ARGUMENTS = {"amount": 150, "order": "A-17"}
REFUND_PROMPT = (
    '[task:general] [confidence:mini=0.9,flagship=0.9] [call:issue_refund {"amount": 150, "order": "A-17"}] '
    "Refund order A-17, the parcel never came."
)


@pytest.fixture(scope="module")
def arbiter(django_db_setup, django_db_blocker, model_server):
    with django_db_blocker.unblock():
        yield from live_arbiter(model_server.base_url)


@pytest.fixture(scope="module")
def verify_grant():
    """`verify_grant` exactly as GRANTS.md prints it."""
    code = re.search(r"```python verify_grant\.py\n(.*?)```", GRANTS_DOC.read_text(), re.DOTALL).group(1)
    assert len(code.strip().splitlines()) <= 40
    spec = importlib.util.spec_from_loader("verify_grant", loader=None)
    module = importlib.util.module_from_spec(spec)
    exec(compile(code, "verify_grant.py", "exec"), module.__dict__)  # noqa: S102 - the documented code, run as printed
    return module.verify_grant


@pytest.fixture
def api(arbiter, live_db):
    """An HTTP client with a key of the job's application that may read jobs and redeem grants."""
    key = key_for(arbiter.setup.application, "jobs:read", "jobs:write", "grants:redeem")
    with httpx.Client(base_url=arbiter.url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as client:
        yield client


@pytest.mark.django_db
def test_the_database_is_set_up():
    pass  # the django_db test that makes pytest-django create the test database for this module


def reviewers() -> tuple:
    return UserFactory(roles=[Role.REVIEWER]), UserFactory(roles=[Role.REVIEWER])


def approved_refund(arbiter, arguments: dict | None = None) -> Job:
    """A refund held by `refunds-over-100` (two approvers), approved by two reviewers through the service."""
    version = PolicyVersion.objects.get(policy=arbiter.setup.policy, status="active")
    call = {"id": "call_refund", "name": "issue_refund", "arguments": arguments or REFUND_ARGUMENTS}
    with transaction.atomic():
        job = held_job(
            version=version,
            application=arbiter.setup.application,
            rule="refunds-over-100",
            required=2,
            content="Refunding the order.",
            tool_calls=[call],
        )
    first, second = reviewers()
    approval_approve(job=job, user=first, reason="order checked")
    return approval_approve(job=job, user=second, reason="amount checked")


def grant_of(api: httpx.Client, job: Job) -> dict:
    body = api.get(f"/api/v1/jobs/{job.pk}").json()
    assert body["status"] == "completed", body
    (grant,) = body["grants"]
    return grant


def redeem(api: httpx.Client, grant: dict, *, tool: str = "issue_refund", arguments=None, token=None) -> httpx.Response:
    return api.post(
        f"/api/v1/grants/{grant['id']}/redeem",
        json={
            "token": grant["token"] if token is None else token,
            "tool": tool,
            "arguments": REFUND_ARGUMENTS if arguments is None else arguments,
        },
    )


def refused(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code, body
    return body


def grant_events(grant: dict, event_type: str) -> list[LedgerEvent]:
    return [
        event
        for event in LedgerEvent.objects.filter(event_type=event_type).order_by("id")
        if event.body.get("grant") == grant["id"]
    ]


# --- the whole way: held, approved, answered on the retry, verified, redeemed once -----------------


def test_an_approved_refund_comes_back_with_a_grant_that_verifies_and_redeems_once(arbiter, api, verify_grant):
    sdk = openai.OpenAI(base_url=f"{arbiter.url}/v1", api_key=api.headers["Authorization"][7:], max_retries=0)
    request = {
        "model": "auto",
        "messages": [{"role": "user", "content": REFUND_PROMPT}],
        "tools": REFUND_TOOL,
        "extra_headers": {"x-arbiter-task-type": "general", "Idempotency-Key": str(uuid.uuid4())},
    }
    with pytest.raises(openai.ConflictError) as held:
        sdk.chat.completions.create(**request)
    assert held.value.code == "approval_required"
    job = Job.objects.get(pk=held.value.body["job_id"])
    assert job.status == JobStatus.AWAITING_APPROVAL
    assert api.get(f"/api/v1/jobs/{job.pk}").json()["grants"] == []

    first, second = reviewers()
    approval_approve(job=job, user=first, reason="order checked")
    assert not ApprovalGrant.objects.filter(job=job).exists()  # one of two approvals releases nothing
    approval_approve(job=job, user=second, reason="amount checked")

    # The same request, retried after the decision, is answered with the call and its grant.
    raw = sdk.chat.completions.with_raw_response.create(**request)
    completion = raw.parse()
    (call,) = completion.choices[0].message.tool_calls
    assert (call.function.name, json.loads(call.function.arguments)) == ("issue_refund", REFUND_ARGUMENTS)
    (grant,) = json.loads(raw.text)["arbiter_grants"]
    assert raw.headers["x-arbiter-grants"] == grant["token"]
    assert grant["tool_call_id"] == call.id and grant["tool"] == "issue_refund"
    assert grant_of(api, job)["token"] == grant["token"]

    claims = verify_grant(
        grant["token"], public_key_b64(), arbiter.setup.application.slug, call.function.name, call.function.arguments
    )
    assert claims["job"] == str(job.pk)
    assert sorted(claims["approvers"]) == sorted([str(first.pk), str(second.pk)])
    assert claims["policy_version_sha256"] == job.policy_version.sha256
    assert claims["arguments_sha256"] == grant["arguments_sha256"]

    redeemed = redeem(api, grant, arguments=call.function.arguments)
    assert redeemed.status_code == 200, redeemed.text
    assert redeemed.json()["job"] == str(job.pk)
    (event,) = grant_events(grant, "grant.redeemed")
    assert event.id == redeemed.json()["ledger_event_id"]
    assert event.subject_job == str(job.pk) and event.actor_kind == "application"
    assert [e.body["grant"] for e in grant_events(grant, "grant.issued")] == [grant["id"]]

    again = refused(redeem(api, grant), 409, "grant_already_redeemed")
    assert "one execution" in again["detail"]
    assert api.get(f"/api/v1/jobs/{job.pk}").json()["grants"][0]["redeemed_at"] is not None


def test_the_responses_api_gives_the_grant_with_the_function_call(arbiter, api, verify_grant):
    sdk = openai.OpenAI(base_url=f"{arbiter.url}/v1", api_key=api.headers["Authorization"][7:], max_retries=0)
    tool = {"type": "function", "name": "issue_refund", "parameters": {"type": "object"}, "strict": False}
    with pytest.raises(openai.ConflictError) as held:
        sdk.responses.create(
            model="auto", input=REFUND_PROMPT, tools=[tool], extra_headers={"x-arbiter-task-type": "general"}
        )
    job = Job.objects.get(pk=held.value.body["job_id"])
    for reviewer in reviewers():
        approval_approve(job=job, user=reviewer, reason="checked")

    raw = sdk.responses.with_raw_response.retrieve(f"resp_{job.pk.hex}")
    response = raw.parse()
    (call,) = [item for item in response.output if item.type == "function_call"]
    (grant,) = response.model_extra["arbiter"]["grants"]
    assert (grant["tool_call_id"], raw.headers["x-arbiter-grants"]) == (call.call_id, grant["token"])
    verify_grant(grant["token"], public_key_b64(), arbiter.setup.application.slug, call.name, call.arguments)
    assert redeem(api, grant, arguments=call.arguments).status_code == 200


# --- the offline verifier as printed ----------------------------------------------------------------


def test_the_printed_verifier_refuses_any_other_call_than_the_approved_one(arbiter, api, verify_grant):
    grant = grant_of(api, approved_refund(arbiter))
    slug, key = arbiter.setup.application.slug, public_key_b64()
    # Key order, whitespace, JSON text or an object, 150 or 150.0: the same arguments.
    assert verify_grant(grant["token"], key, slug, "issue_refund", {"order": "A-17", "amount": 150.0})
    assert verify_grant(grant["token"], key, slug, "issue_refund", '{ "order":"A-17",  "amount":150 }')

    cases = {
        "changed arguments": (slug, "issue_refund", {**REFUND_ARGUMENTS, "amount": 1500}),
        "another tool": (slug, "delete_account", REFUND_ARGUMENTS),
        "another application's grant": ("someone-else", "issue_refund", REFUND_ARGUMENTS),
    }
    for reason, (application, tool, arguments) in cases.items():
        with pytest.raises(ValueError, match=reason):
            verify_grant(grant["token"], key, application, tool, arguments)

    message, signature = grant["token"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(message + "=" * (-len(message) % 4)))
    forged = base64.urlsafe_b64encode(json.dumps({**claims, "arguments_sha256": "0" * 64}).encode()).decode()
    with pytest.raises(ValueError, match="signature invalid"):
        verify_grant(f"{forged.rstrip('=')}.{signature}", key, slug, "issue_refund", REFUND_ARGUMENTS)
    other_key = base64.b64encode(bytes(32)).decode()
    with pytest.raises(ValueError):
        verify_grant(grant["token"], other_key, slug, "issue_refund", REFUND_ARGUMENTS)


def test_the_printed_verifier_refuses_an_expired_grant(arbiter, api, verify_grant, settings):
    settings.ARBITER_GRANT_TTL_S = 0
    grant = grant_of(api, approved_refund(arbiter))
    with pytest.raises(ValueError, match="expired"):
        verify_grant(grant["token"], public_key_b64(), arbiter.setup.application.slug, "issue_refund", REFUND_ARGUMENTS)


# --- every refusal of the redemption, each with its code --------------------------------------------


def test_another_tool_or_changed_arguments_are_refused_and_do_not_use_the_grant_up(arbiter, api):
    grant = grant_of(api, approved_refund(arbiter))

    refused(redeem(api, grant, tool="delete_account"), 403, "grant_tool_mismatch")
    changed = refused(
        redeem(api, grant, arguments={**REFUND_ARGUMENTS, "amount": 151}), 403, "grant_arguments_mismatch"
    )
    assert "a changed call needs a new approval" in changed["detail"]
    refused(redeem(api, grant, arguments={**REFUND_ARGUMENTS, "note": "extra"}), 403, "grant_arguments_mismatch")

    assert [event.body["code"] for event in grant_events(grant, "grant.refused")] == [
        "grant_tool_mismatch",
        "grant_arguments_mismatch",
        "grant_arguments_mismatch",
    ]
    # The exact call still redeems: a refused attempt does not spend the grant.
    assert redeem(api, grant, arguments='{"order": "A-17", "amount": 150}').status_code == 200


def test_a_tampered_token_is_refused(arbiter, api):
    grant = grant_of(api, approved_refund(arbiter))
    other = grant_of(api, approved_refund(arbiter))
    message, signature = grant["token"].split(".")
    flipped = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]
    claims = json.loads(base64.urlsafe_b64decode(message + "=" * (-len(message) % 4)))
    rewritten = (
        base64.urlsafe_b64encode(
            json.dumps({**claims, "tool": "delete_account"}, sort_keys=True, separators=(",", ":")).encode()
        )
        .decode()
        .rstrip("=")
    )

    for token in (f"{message}.{flipped}", f"{rewritten}.{signature}", other["token"], "not-a-token", ""):
        body = refused(
            redeem(api, grant, token=token),
            403 if token else 400,
            "grant_signature_invalid" if token else "validation_error",
        )
        if token:
            assert "not grant" in body["detail"]
    assert redeem(api, grant).status_code == 200


def test_an_expired_grant_is_refused(arbiter, api, settings):
    settings.ARBITER_GRANT_TTL_S = 0
    grant = grant_of(api, approved_refund(arbiter))
    refused(redeem(api, grant), 410, "grant_expired")
    assert ApprovalGrant.objects.get(pk=grant["id"]).redeemed_at is None


def test_another_applications_grant_is_not_found(arbiter, api):
    grant = grant_of(api, approved_refund(arbiter))
    outsider_key = key_for(ApplicationFactory(), "jobs:read", "grants:redeem")
    with httpx.Client(base_url=arbiter.url, headers={"Authorization": f"Bearer {outsider_key}"}) as outsider:
        body = refused(redeem(outsider, grant), 404, "not_found")
        assert "issue_refund" not in json.dumps(body)
        job_id = ApprovalGrant.objects.get(pk=grant["id"]).job_id
        refused(outsider.get(f"/api/v1/jobs/{job_id}"), 404, "not_found")
    assert grant_events(grant, "grant.refused") == []  # nothing of the other application's attempt on its ledger
    assert redeem(api, grant).status_code == 200


def test_the_endpoint_needs_its_scope_a_body_and_post(arbiter, api):
    grant = grant_of(api, approved_refund(arbiter))
    read_only = key_for(arbiter.setup.application, "jobs:read", "jobs:write")
    with httpx.Client(base_url=arbiter.url, headers={"Authorization": f"Bearer {read_only}"}) as client:
        refused(redeem(client, grant), 403, "insufficient_scope")
    with httpx.Client(base_url=arbiter.url) as anonymous:
        assert redeem(anonymous, grant).status_code == 401
    assert api.get(f"/api/v1/grants/{grant['id']}/redeem").status_code == 405
    missing = refused(
        api.post(f"/api/v1/grants/{grant['id']}/redeem", json={"token": grant["token"]}), 400, "validation_error"
    )
    assert {error["field"] for error in missing["errors"]} == {"tool", "arguments"}
    refused(redeem(api, {**grant, "id": "not-a-uuid"}), 404, "not_found")
    refused(redeem(api, {**grant, "id": str(uuid.uuid4())}), 404, "not_found")
    assert redeem(api, grant).status_code == 200


# --- what gets a grant ---------------------------------------------------------------------------


def test_an_override_is_granted_for_the_edited_call_only(arbiter, api):
    version = PolicyVersion.objects.get(policy=arbiter.setup.policy, status="active")
    with transaction.atomic():
        job = held_job(
            version=version,
            application=arbiter.setup.application,
            rule="refunds-over-100",
            required=2,
            tool_calls=[{"id": "call_refund", "name": "issue_refund", "arguments": REFUND_ARGUMENTS}],
        )
        # The edited call is governed again, against the tools the request offered.
        Job.objects.filter(pk=job.pk).update(request={**job.request, "tools": REFUND_TOOL})
    first, second = reviewers()
    edited = {"id": "call_refund", "name": "issue_refund", "arguments": {**REFUND_ARGUMENTS, "amount": 120}}
    approval_override(job=job, user=first, reason="partial refund", output={"content": "", "tool_calls": [edited]})
    assert not ApprovalGrant.objects.filter(job=job).exists()  # the edit needs a second approval, as the rule says
    approval_approve(job=job, user=second, reason="partial refund confirmed")

    grant = grant_of(api, job)
    refused(redeem(api, grant), 403, "grant_arguments_mismatch")  # the model's original 150
    assert redeem(api, grant, arguments={**REFUND_ARGUMENTS, "amount": 120}).status_code == 200


def test_an_approved_answer_without_a_tool_call_gets_no_grant(arbiter, api):
    version = PolicyVersion.objects.get(policy=arbiter.setup.policy, status="active")
    with transaction.atomic():
        job = held_job(version=version, application=arbiter.setup.application)
    approval_approve(job=job, user=UserFactory(roles=[Role.REVIEWER]))
    body = api.get(f"/api/v1/jobs/{job.pk}").json()
    assert (body["status"], body["grants"]) == ("completed", [])


# --- single use under concurrency --------------------------------------------------------------------


def test_of_concurrent_redemptions_exactly_one_wins(arbiter, api):
    grant = grant_of(api, approved_refund(arbiter))
    attempts = 6
    start = threading.Barrier(attempts)
    statuses: list[int] = []

    def attempt() -> None:
        # Each thread its own HTTP connection, so each request its own server thread and database connection.
        with httpx.Client(base_url=arbiter.url, headers=dict(api.headers), timeout=60) as client:
            start.wait(timeout=30)
            statuses.append(redeem(client, grant).status_code)

    threads = [threading.Thread(target=attempt) for _ in range(attempts)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(statuses) == [200] + [409] * (attempts - 1)
    assert len(grant_events(grant, "grant.redeemed")) == 1
    assert [event.body["code"] for event in grant_events(grant, "grant.refused")] == ["grant_already_redeemed"] * (
        attempts - 1
    )


# --- an agent pauses on a hold, people approve from the review API, the agent redeems its grant ----------


def test_an_agents_sdk_agent_pauses_on_a_held_refund_and_executes_it_only_with_its_redeemed_grant(
    arbiter, api, verify_grant
):
    """The OpenAI Agents SDK on its default Responses API, its client waiting on holds; two reviewers approve
    from the REST review API with their personal tokens; the agent's tool verifies the grant offline and
    redeems it before it refunds anything. A second redemption and a tampered argument are refused."""
    from agents import Agent, RunConfig, Runner, function_tool
    from agents.models.openai_provider import OpenAIProvider

    from routing.services.personal_tokens import personal_token_create

    slug, key = arbiter.setup.application.slug, public_key_b64()
    grants: list[str] = []
    refunds: list[tuple[int, str]] = []

    async def keep_grants(response: httpx.Response) -> None:
        if response.headers.get("x-arbiter-grants"):
            grants.append(response.headers["x-arbiter-grants"])

    @function_tool
    def issue_refund(amount: int, order: str) -> str:
        """Refund an order."""
        arguments = {"amount": amount, "order": order}
        (token,) = grants
        claims = verify_grant(token, key, slug, "issue_refund", arguments)  # offline: the key and the claims
        redeemed = redeem(api, {"id": claims["id"], "token": token}, arguments=arguments)
        if redeemed.status_code != 200:
            return f"not refunded: {redeemed.json()['code']}"
        refunds.append((amount, order))
        return f"refunded {amount} on {order}"

    decisions: list[int] = []

    def approve_from_the_review_api() -> None:
        try:
            job = wait_for_held()
            for person in reviewers():
                expires_at = timezone.now() + timedelta(hours=1)
                _, token = personal_token_create(
                    user=person, name="chat bot", scopes=["reviews:decide"], expires_at=expires_at
                )
                with httpx.Client(base_url=arbiter.url, headers={"Authorization": f"Bearer {token}"}) as review:
                    version = review.get(f"/api/v1/review/jobs/{job.pk}").json()["version"]
                    decided = review.post(
                        f"/api/v1/review/jobs/{job.pk}/approve", json={"expected_version": version, "reason": "checked"}
                    )
                    decisions.append(decided.status_code)
        finally:
            connections.close_all()  # this thread's own

    before = set(Job.objects.filter(application=arbiter.setup.application).values_list("pk", flat=True))

    def wait_for_held() -> Job:
        return wait_for(
            lambda: Job.objects.filter(application=arbiter.setup.application, status=JobStatus.AWAITING_APPROVAL)
            .exclude(pk__in=before)
            .first(),
            message="the agent's refund to be held",
        )

    reviewer_thread = threading.Thread(target=approve_from_the_review_api)
    reviewer_thread.start()
    client = openai.AsyncOpenAI(
        base_url=f"{arbiter.url}/v1",
        api_key=api.headers["Authorization"][7:],
        max_retries=0,
        timeout=120,
        default_headers={"x-arbiter-task-type": "general", "x-arbiter-wait-for-approval": "90"},
        http_client=httpx.AsyncClient(event_hooks={"response": [keep_grants]}),
    )
    agent = Agent(name="support", instructions="Refund what is owed.", model="auto", tools=[issue_refund])
    result = Runner.run_sync(
        agent,
        REFUND_PROMPT,
        run_config=RunConfig(model_provider=OpenAIProvider(openai_client=client), tracing_disabled=True),
    )
    reviewer_thread.join(timeout=60)
    assert decisions == [200, 200]
    assert refunds == [(150, "A-17")]  # executed once, after its grant was verified and redeemed
    assert result.final_output
    (token,) = grants
    claims = verify_grant(token, key, slug, "issue_refund", REFUND_ARGUMENTS)
    held = Job.objects.get(pk=claims["job"])
    assert held.status == JobStatus.COMPLETED and len(claims["approvers"]) == 2
    refused(redeem(api, {"id": claims["id"], "token": token}), 409, "grant_already_redeemed")
    refused(
        redeem(api, {"id": claims["id"], "token": token}, arguments={**REFUND_ARGUMENTS, "amount": 1500}),
        403,
        "grant_arguments_mismatch",
    )
