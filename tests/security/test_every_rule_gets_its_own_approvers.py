"""Every approval rule that holds an answer keeps its own group and number of approvers: a second rule's
group binds as much as the first's, also after an override."""

from __future__ import annotations

import pytest

from controlplane.roles import Role
from review.services import ReviewError, approval_approve, approval_override
from routing.models import JobStatus
from tests.support.factories import UserFactory
from tests.support.governed import REFUND_TOOL, governed
from tests.support.personas import client_with, key_for
from tests.support.workers import finished

pytestmark = pytest.mark.slow

TWO_GROUPS = """
rules:
  - id: default
    cascade: [mini, flagship]
    escalate_below: {mini: 0.75}
    confidence: logprob
approvals:
  - id: any-refund
    when: {tool: issue_refund}
    approvers: 1
    group: reviewer
  - id: big-refund-needs-policy-admin
    when: {tool: issue_refund, args.amount: {gt: 1000}}
    approvers: 1
    group: policy_admin
"""
REFUND = '[task:general] [confidence:mini=0.9,flagship=0.9] [call:issue_refund {"amount": 5000}] refund'
SMALL_REFUND = '[task:general] [confidence:mini=0.9,flagship=0.9] [call:issue_refund {"amount": 50}] refund'


def test_a_second_rules_group_is_enforced(model_server, workers):
    setup = governed(model_server.base_url, policy_source=TWO_GROUPS)
    workers.start()
    job = finished(setup.submit(REFUND, task_type="general", tools=REFUND_TOOL))
    assert job.status == JobStatus.AWAITING_APPROVAL
    request = job.approval_requests.get()
    assert set(request.rule_ids) == {"any-refund", "big-refund-needs-policy-admin"}
    assert {(item["rule"], item["group"]) for item in request.requirements} == {
        ("any-refund", "reviewer"),
        ("big-refund-needs-policy-admin", "policy_admin"),
    }
    reviewer = UserFactory(roles=[Role.REVIEWER])  # not a policy admin
    approval_approve(job=job, user=reviewer, reason="fine")
    job.refresh_from_db()
    assert job.status == JobStatus.AWAITING_APPROVAL, "a reviewer alone released a policy_admin-only answer"
    approval = client_with(key_for(setup.application, "jobs:read")).get(f"/api/v1/jobs/{job.pk}").json()["approval"]
    assert approval["satisfied"] is False and approval["approvals"] == 1
    assert {(item["group"], item["approvals"], item["approvers"]) for item in approval["requirements"]} == {
        ("reviewer", 1, 1),
        ("policy_admin", 0, 1),
    }

    approval_approve(job=job, user=UserFactory(roles=[Role.POLICY_ADMIN]), reason="fine too")
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED


def test_one_person_in_both_groups_meets_both_requirements_with_one_approval(model_server, workers):
    setup = governed(model_server.base_url, policy_source=TWO_GROUPS)
    workers.start()
    job = finished(setup.submit(REFUND, task_type="general", tools=REFUND_TOOL))
    approval_approve(job=job, user=UserFactory(roles=[Role.REVIEWER, Role.POLICY_ADMIN]), reason="ok")
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED


def test_an_override_into_a_rule_reserved_for_another_group_is_not_released_by_the_overrider(model_server, workers):
    setup = governed(model_server.base_url, policy_source=TWO_GROUPS)
    workers.start()
    job = finished(setup.submit(SMALL_REFUND, task_type="general", tools=REFUND_TOOL))
    assert job.status == JobStatus.AWAITING_APPROVAL
    assert job.approval_requests.get().rule_ids == ["any-refund"]
    output = job.result["output"]
    edited = {**output, "tool_calls": [{**output["tool_calls"][0], "arguments": {"amount": 5000}}]}
    reviewer = UserFactory(roles=[Role.REVIEWER])
    approval_override(job=job, user=reviewer, reason="more", output=edited)
    job.refresh_from_db()
    assert job.status == JobStatus.AWAITING_APPROVAL, "one reviewer released a 5000 refund that needs a policy admin"
    groups = {item["group"] for item in job.approval_requests.get(status="pending").requirements}
    assert groups == {"reviewer", "policy_admin"}

    with pytest.raises(ReviewError, match="policy_admin"):
        approval_approve(job=job, user=UserFactory(roles=[Role.AUDITOR]), reason="not mine to decide")
    approval_approve(job=job, user=UserFactory(roles=[Role.POLICY_ADMIN]), reason="checked")
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED
