"""Issue 12, item 4: an override is a decision like an approval. One reviewer editing a held refund's
amount from 5,000 to 5,000,000 no longer completes a two-approver job: the edit is governed again by
the job's policy, needs as many distinct eligible people as the hold it replaces (or more, if the edit
triggers a stricter rule), and the overriding reviewer is only the first of them."""

from __future__ import annotations

import pytest
from django.urls import reverse

from controlplane.roles import Role
from review.services import ReviewError, approval_approve, approval_override
from routing.models import ApprovalDecision, Job, JobStatus
from tests.support.factories import UserFactory
from tests.support.governed import REFUND_TOOL, governed
from tests.support.personas import client_with, key_for
from tests.support.workers import event_types, finished

pytestmark = pytest.mark.slow

REFUND = '[task:general] [confidence:mini=0.9,flagship=0.9] [call:issue_refund {"amount": 5000}] refund'
UNSURE = "[task:classification] [confidence:nano=0.2,mini=0.3,flagship=0.4] unsure"


@pytest.fixture
def scene(model_server, workers):
    setup = governed(model_server.base_url)
    workers.start()
    client = client_with(key_for(setup.application, "jobs:read", "jobs:write"))
    alice, bob, carol = (UserFactory(roles=[Role.REVIEWER]) for _ in range(3))
    return setup, client, alice, bob, carol


def held_refund(setup) -> Job:
    job = finished(setup.submit(REFUND, task_type="general", tools=REFUND_TOOL))
    assert job.status == JobStatus.AWAITING_APPROVAL
    assert job.approval_requests.get().required_approvers == 2
    return job


def refund_of(job: Job, amount: int) -> dict:
    output = job.result["output"]
    return {**output, "tool_calls": [{**output["tool_calls"][0], "arguments": {"amount": amount}}]}


def test_one_override_of_a_two_approver_job_is_one_of_two_and_a_second_person_releases_it(scene):
    setup, client, alice, bob, _ = scene
    job = held_refund(setup)

    job = approval_override(job=job, user=alice, reason="customer asked for more", output=refund_of(job, 5_000_000))
    assert job.status == JobStatus.AWAITING_APPROVAL
    detail = client.get(f"/api/v1/jobs/{job.pk}").json()
    assert detail["status"] == JobStatus.AWAITING_APPROVAL and detail["result"] is None
    assert (detail["approval"]["approvals"], detail["approval"]["required_approvers"]) == (1, 2)
    assert [r.status for r in job.approval_requests.order_by("id")] == ["overridden", "pending"]
    assert event_types(job)[-3:] == ["approval.overridden", "approval.requested", "approval.approved"]

    job = approval_approve(job=job, user=bob, reason="checked with finance")
    assert job.status == JobStatus.COMPLETED
    detail = client.get(f"/api/v1/jobs/{job.pk}").json()
    assert detail["result"]["output"]["tool_calls"][0]["arguments"] == {"amount": 5_000_000}
    assert detail["result"]["overridden"] is True
    assert event_types(job)[-3:] == ["approval.approved", "job.completed", "grant.issued"]


def test_the_same_person_cannot_override_and_then_approve_or_override_again(scene):
    setup, _, alice, _, _ = scene
    job = held_refund(setup)
    job = approval_override(job=job, user=alice, reason="raise it", output=refund_of(job, 6000))
    with pytest.raises(ReviewError, match="already decided"):
        approval_approve(job=job, user=alice)
    with pytest.raises(ReviewError, match="already decided"):
        approval_override(job=job, user=alice, reason="and again", output=refund_of(job, 7000))
    job.refresh_from_db()
    assert job.status == JobStatus.AWAITING_APPROVAL
    assert job.result["output"]["tool_calls"][0]["arguments"] == {"amount": 6000}


def test_an_edit_to_a_tool_the_policy_blocks_is_refused_and_nothing_changes(scene):
    setup, _, alice, _, _ = scene
    job = held_refund(setup)
    before = (job.result, job.version)
    output = job.result["output"]
    edited = {**output, "tool_calls": [{**output["tool_calls"][0], "name": "delete_database", "arguments": {}}]}
    with pytest.raises(ReviewError, match="the policy blocks this output"):
        approval_override(job=job, user=alice, reason="do this instead", output=edited)
    job.refresh_from_db()
    assert job.status == JobStatus.AWAITING_APPROVAL and (job.result, job.version) == before
    assert not ApprovalDecision.objects.filter(request__job=job).exists()


def test_a_one_approver_edit_that_triggers_nothing_new_completes_at_once(scene):
    setup, _, alice, _, _ = scene
    job = finished(setup.submit(UNSURE))
    assert job.approval_requests.get().required_approvers == 1
    job = approval_override(job=job, user=alice, reason="it is billing", output={"content": "billing"})
    assert job.status == JobStatus.COMPLETED and job.result["output"] == {"content": "billing"}


def test_an_edit_that_triggers_a_stricter_rule_keeps_a_one_approver_job_held(scene):
    setup, client, alice, bob, carol = scene
    job = finished(setup.submit(UNSURE, tools=REFUND_TOOL))
    assert job.approval_requests.get().required_approvers == 1
    edited = {"content": "", "tool_calls": [{"id": "c1", "name": "issue_refund", "arguments": {"amount": 500}}]}
    job = approval_override(job=job, user=alice, reason="refund instead", output=edited)
    assert job.status == JobStatus.AWAITING_APPROVAL
    pending = job.approval_requests.get(status="pending")
    assert pending.required_approvers == 2 and "refunds-over-100" in pending.rule_ids
    assert client.get(f"/api/v1/jobs/{job.pk}").json()["result"] is None
    # A second override by someone else replaces the proposal; it starts its own count.
    job = approval_override(job=job, user=bob, reason="smaller", output={**edited, "content": "partial"})
    assert job.status == JobStatus.AWAITING_APPROVAL
    assert job.approval_requests.get(status="pending").decisions.filter(kind="approve").count() == 1
    job = approval_approve(job=job, user=carol)
    assert job.status == JobStatus.COMPLETED and job.result["output"]["content"] == "partial"


def test_nobody_overrides_their_own_job(scene):
    setup, _, alice, _, _ = scene
    job = held_refund(setup)
    Job.objects.filter(pk=job.pk).update(submitted_by=alice)
    with pytest.raises(ReviewError, match="you submitted this job"):
        approval_override(job=job, user=alice, reason="mine", output=refund_of(job, 1))


def test_a_malformed_edit_is_refused_with_a_clear_message(scene):
    setup, _, alice, _, _ = scene
    job = held_refund(setup)
    with pytest.raises(ReviewError, match="needs a `name`"):
        approval_override(job=job, user=alice, reason="x", output={"tool_calls": [{"arguments": {}}]})
    with pytest.raises(ReviewError, match="must be an object"):
        approval_override(job=job, user=alice, reason="x", output=["not", "an", "object"])


def test_the_reviewer_pages_show_the_proposed_output_and_one_of_two(scene, client):
    setup, _, alice, bob, _ = scene
    job = held_refund(setup)
    approval_override(job=job, user=alice, reason="raise it", output=refund_of(job, 5_000_000))
    client.force_login(bob)
    page = client.get(reverse("job", kwargs={"job_id": job.pk})).content.decode()
    assert "1 of 2 approvals" in page
    assert "proposed, awaiting approval" in page and "5000000" in page
    queue = client.get(reverse("queue"), {"application": setup.application.slug}).content.decode()
    assert str(job.pk)[:8] in queue and "1 of 2" in queue
