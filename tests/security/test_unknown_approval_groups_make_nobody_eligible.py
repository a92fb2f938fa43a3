"""An approval group Arbiter has no role for is refused when the policy is checked, and a request that
names one (written before the check existed) can be decided by nobody, never by "any reviewer"."""

from __future__ import annotations

import pytest

from controlplane.roles import Role
from review.services import ReviewError, approval_approve
from routing.decide.policy import check_policy
from routing.models import JobStatus
from tests.support.factories import UserFactory
from tests.support.governed import REFUND_TOOL, governed
from tests.support.workers import finished

FINANCE_GROUP = """
rules:
  - id: default
    cascade: [mini, flagship]
    escalate_below: {mini: 0.75}
    confidence: logprob
approvals:
  - id: refunds-need-finance
    when: {tool: issue_refund}
    approvers: 1
    group: finance
"""
REFUND = '[task:general] [confidence:mini=0.9,flagship=0.9] [call:issue_refund {"amount": 5000}] refund'


@pytest.mark.parametrize("group", ["finance", "auditor"])
def test_a_policy_naming_a_group_arbiter_does_not_let_decide_is_refused(group):
    errors = check_policy(FINANCE_GROUP.replace("group: finance", f"group: {group}"))
    assert [error.path for error in errors] == ["approvals[0].group"], errors
    assert f"unknown approval group '{group}'" in errors[0].message
    assert "reviewer, policy_admin" in errors[0].message


@pytest.mark.slow
def test_a_group_arbiter_does_not_know_is_not_any_reviewer(model_server, workers):
    setup = governed(model_server.base_url)  # refunds-over-100, held for reviewers
    workers.start()
    job = finished(setup.submit(REFUND, task_type="general", tools=REFUND_TOOL))
    assert job.status == JobStatus.AWAITING_APPROVAL
    request = job.approval_requests.get()
    request.requirements = [{"rule": "refunds-need-finance", "group": "finance", "approvers": 1}]
    request.eligible_group = "finance"
    request.save(update_fields=["requirements", "eligible_group"])
    for roles in ([Role.REVIEWER], [Role.POLICY_ADMIN], [Role.REVIEWER, Role.POLICY_ADMIN]):
        with pytest.raises(ReviewError, match="only members of 'finance'"):
            approval_approve(job=job, user=UserFactory(roles=roles), reason="ok")
    job.refresh_from_db()
    assert job.status == JobStatus.AWAITING_APPROVAL, "a reviewer outside `finance` released a finance-only hold"


def test_a_stored_version_written_before_the_rule_still_loads():
    # Versions are immutable: one that names `finance` must keep routing (its holds wait for nobody and
    # expire as it says) rather than crash every job that runs under it.
    from routing.decide.policy import load_policy
    from routing.decide.policy.document import policy_from_data

    stored = load_policy(FINANCE_GROUP.replace("group: finance", "group: reviewer")).as_data()
    stored["approvals"][0]["group"] = "finance"
    assert policy_from_data(stored).approvals[0].group == "finance"
