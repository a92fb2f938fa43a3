"""Issue 12, item 3: a replay is an evaluation. Replayed under a draft with no approval rules (or under
any version), a held refund or a blocked `delete_database` call completes as a replay that reviewers
read beside the original — and that the application can never read, list, cancel or be told about.
The original stays held (or blocked) until decided on itself."""

from __future__ import annotations

import pytest
from django.test import override_settings
from django.urls import reverse

from controlplane.roles import Role
from review.services import ReviewError, approval_approve, job_replay
from routing.execute.webhooks import webhook_deliver
from routing.models import Job, JobStatus, WebhookDelivery
from routing.models.jobs import JobPurpose
from routing.services.policies import policy_version_create
from tests.security.test_held_output_is_never_released import AMOUNT, mentions, settled
from tests.support.factories import UserFactory
from tests.support.governed import POLICY, governed
from tests.support.personas import client_with, key_for
from tests.support.workers import finished

pytestmark = pytest.mark.slow

TOOLS = [
    {"type": "function", "function": {"name": "issue_refund", "parameters": {"type": "object"}}},
    {"type": "function", "function": {"name": "delete_database", "parameters": {"type": "object"}}},
]
GUARDED = POLICY + "blocked_tools: [delete_database]\n"
NO_RULES_DRAFT = """
rules:
  - id: anything-goes
    cascade: [mini, flagship]
    escalate_below: {mini: 0.75}
    confidence: logprob
"""
HELD_REFUND = f'[task:general] [confidence:mini=0.9,flagship=0.9] [call:issue_refund {{"amount": {AMOUNT}}}] refund'
DELETE = '[task:general] [confidence:mini=0.9,flagship=0.9] [call:delete_database {"name": "customers"}] tidy up'


@pytest.fixture
def scene(model_server, workers):
    setup = governed(model_server.base_url, policy_source=GUARDED)
    workers.start()
    draft = policy_version_create(
        policy=setup.policy, source=NO_RULES_DRAFT, author=UserFactory(), comment="no approval rules"
    )
    client = client_with(key_for(setup.application, "jobs:read", "jobs:write"))
    return setup, draft, client, UserFactory(roles=[Role.REVIEWER])


def submit(client, setup, content: str) -> str:
    body = {
        "task_type": "general",
        "messages": [{"role": "user", "content": content}],
        "policy": setup.policy.name,
        "tools": TOOLS,
    }
    response = client.post("/api/v1/jobs", body, format="json")
    assert response.status_code == 201, response.json()
    return response.json()["id"]


def assert_invisible_to_the_application(client, replay: Job) -> None:
    for url in (f"/api/v1/jobs/{replay.pk}", f"/api/v1/jobs/{replay.pk}/events"):
        response = client.get(url)
        assert response.status_code == 404, url
        assert response.json()["detail"] == f"no job {replay.pk}"
    assert client.post(f"/api/v1/jobs/{replay.pk}/cancel", {}, format="json").status_code == 404
    listed = client.get("/api/v1/jobs").json()["results"]
    assert str(replay.pk) not in [row["id"] for row in listed]
    assert not any(mentions(str(row), AMOUNT) for row in listed)


@pytest.mark.parametrize(
    ("content", "held_as", "answer"),
    [(HELD_REFUND, JobStatus.AWAITING_APPROVAL, "issue_refund"), (DELETE, JobStatus.BLOCKED, "delete_database")],
)
def test_a_replay_under_a_draft_without_rules_is_never_the_applications_answer(scene, content, held_as, answer):
    setup, draft, client, reviewer = scene
    original_id = submit(client, setup, content)
    settled(client, original_id, held_as)

    replay = finished(job_replay(job=Job.objects.get(pk=original_id), user=reviewer, policy_version=draft))
    # Under the draft nothing holds or blocks it: the replay completes, with the answer in it ...
    assert replay.status == JobStatus.COMPLETED and replay.purpose == JobPurpose.EVALUATION
    assert replay.result["output"]["tool_calls"][0]["name"] == answer
    # ... which the application can never reach.
    assert_invisible_to_the_application(client, replay)
    original = client.get(f"/api/v1/jobs/{original_id}").json()
    assert original["status"] == held_as and original["result"] is None
    assert original["replay_of"] is None

    # No webhook, even if the row had a callback address.
    Job.objects.filter(pk=replay.pk).update(callback_url="http://localhost:9/hook")
    with override_settings(ARBITER_WEBHOOK_SECRET="replay-secret"):
        outcome = webhook_deliver(job_id=str(replay.pk), event="job.completed")
    assert outcome.delivered is False and outcome.retry is False
    assert not WebhookDelivery.objects.filter(job=replay).exists()


def test_a_replay_under_the_active_version_is_an_evaluation_too_and_the_original_stays_held(scene):
    setup, _, client, reviewer = scene
    original_id = submit(client, setup, HELD_REFUND)
    settled(client, original_id, JobStatus.AWAITING_APPROVAL)
    original = Job.objects.get(pk=original_id)
    replay = finished(job_replay(job=original, user=reviewer))
    assert replay.status == JobStatus.AWAITING_APPROVAL and replay.purpose == JobPurpose.EVALUATION
    with pytest.raises(ReviewError, match="you submitted this job"):
        approval_approve(job=replay, user=reviewer)
    # Approving the replay by two others decides the replay, never the original.
    for person in (UserFactory(roles=[Role.REVIEWER]), UserFactory(roles=[Role.REVIEWER])):
        replay = approval_approve(job=replay, user=person)
    assert replay.status == JobStatus.COMPLETED
    assert_invisible_to_the_application(client, replay)
    detail = client.get(f"/api/v1/jobs/{original_id}").json()
    assert detail["status"] == JobStatus.AWAITING_APPROVAL and detail["result"] is None
    assert detail["approval"]["approvals"] == 0


def test_reviewers_see_the_replay_labelled_as_an_evaluation(scene, client):
    setup, draft, api, reviewer = scene
    original_id = submit(api, setup, HELD_REFUND)
    settled(api, original_id, JobStatus.AWAITING_APPROVAL)
    replay = finished(job_replay(job=Job.objects.get(pk=original_id), user=reviewer, policy_version=draft))
    client.force_login(reviewer)
    for name in ("job", "job-compare"):
        page = client.get(reverse(name, kwargs={"job_id": replay.pk})).content.decode()
        assert "evaluation — never released to the application" in page, name
    original_page = client.get(reverse("job", kwargs={"job_id": original_id})).content.decode()
    assert "run as an evaluation" in original_page
