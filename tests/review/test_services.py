"""What reviewers do to held jobs, through the same services the UI and the API call."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from audit import payloads
from controlplane.roles import Role
from review.services import (
    ReviewError,
    StaleReview,
    approval_approve,
    approval_escalate,
    approval_override,
    approval_reject,
    approvals_expire_due,
    job_replay,
)
from routing.models import ApprovalRequest, Job, JobStatus
from tests.support.factories import UserFactory
from tests.support.governed import REFUND_TOOL, governed
from tests.support.workers import event_types, finished

pytestmark = pytest.mark.slow
UNSURE = "[task:classification] [confidence:nano=0.2,mini=0.3,flagship=0.4] unsure"


@pytest.fixture
def reviewers(live_db):
    return UserFactory(roles=[Role.REVIEWER]), UserFactory(roles=[Role.REVIEWER])


def held_refund(setup) -> Job:
    return finished(
        setup.submit(
            '[task:general] [confidence:mini=0.9,flagship=0.9] [call:issue_refund {"amount": 150}] refund',
            task_type="general",
            tools=REFUND_TOOL,
        )
    )


def test_a_two_approver_rule_needs_two_different_people(model_server, workers, reviewers):
    first, second = reviewers
    setup = governed(model_server.base_url)
    workers.start()
    job = held_refund(setup)
    assert job.status == JobStatus.AWAITING_APPROVAL

    job = approval_approve(job=job, user=first, reason="amount checked")
    assert job.status == JobStatus.AWAITING_APPROVAL  # one of two
    with pytest.raises(ReviewError, match="someone else"):
        approval_approve(job=job, user=first)
    job = approval_approve(job=job, user=second)
    assert job.status == JobStatus.COMPLETED
    assert ApprovalRequest.objects.get(job=job).status == "approved"
    assert event_types(job)[-4:] == ["approval.approved", "approval.approved", "job.completed", "grant.issued"]


def test_only_reviewers_decide_and_nobody_approves_their_own_replay(model_server, workers, reviewers):
    reviewer, _ = reviewers
    setup = governed(model_server.base_url)
    workers.start()
    job = finished(setup.submit(UNSURE))
    with pytest.raises(ReviewError, match="only members"):
        approval_approve(job=job, user=UserFactory(roles=[Role.AUDITOR]))
    replay = finished(job_replay(job=job, user=reviewer))
    assert replay.status == JobStatus.AWAITING_APPROVAL
    with pytest.raises(ReviewError, match="you submitted this job"):
        approval_approve(job=replay, user=reviewer)


def test_a_rejection_needs_a_reason_and_ends_the_job(model_server, workers, reviewers):
    reviewer, _ = reviewers
    setup = governed(model_server.base_url)
    workers.start()
    job = finished(setup.submit(UNSURE))
    with pytest.raises(ReviewError, match="needs a reason"):
        approval_reject(job=job, user=reviewer, reason="  ")
    job = approval_reject(job=job, user=reviewer, reason="the answer is a guess")
    assert job.status == JobStatus.REJECTED
    assert job.status_reason == "the answer is a guess"


def test_override_takes_another_steps_output_with_its_reason(model_server, workers, reviewers):
    reviewer, _ = reviewers
    setup = governed(model_server.base_url)
    workers.start()
    job = finished(setup.submit(UNSURE))
    nano_step = job.steps.get(tier="nano")
    job = approval_override(job=job, user=reviewer, reason="nano had it right", step_id=nano_step.pk)
    assert job.status == JobStatus.COMPLETED
    assert job.result["output"] == nano_step.output
    assert job.result["overridden"] is True
    overridden = next(e for e in _events(job) if e.event_type == "approval.overridden")
    assert overridden.body["reason"] == "nano had it right"
    # The ledger holds digests of the before and after, whose redacted content is in the payload store.
    assert json.loads(payloads.load(overridden.body["before"]))["tier"] == "flagship"
    assert json.loads(payloads.load(overridden.body["after"]))["output"] == nano_step.output
    assert overridden.body["step"] == nano_step.pk


def test_two_reviewers_at_once_one_wins_the_other_is_told(model_server, workers, reviewers):
    first, second = reviewers
    setup = governed(model_server.base_url)
    workers.start()
    job = finished(setup.submit(UNSURE))
    seen_version = job.version
    approval_reject(job=job, user=first, reason="wrong", expected_version=seen_version)
    with pytest.raises(StaleReview, match="another reviewer acted"):
        approval_approve(job=job, user=second, expected_version=seen_version)


def test_escalate_reruns_the_job_from_a_higher_tier(model_server, workers, reviewers):
    reviewer, _ = reviewers
    setup = governed(model_server.base_url)
    workers.start()
    job = finished(
        setup.submit(
            "[task:general] [confidence:mini=0.9,flagship=0.95] pii",
            task_type="general",
            labels={"pii": True},
        )
    )
    assert job.status == JobStatus.AWAITING_APPROVAL and job.final_tier == "mini"
    approval_escalate(job=job, user=reviewer, reason="want the flagship's answer")
    job = finished(job)
    assert job.final_tier == "flagship"
    assert job.status == JobStatus.AWAITING_APPROVAL  # still personal data: a human decides again
    assert list(job.steps.values_list("attempt", "tier")) == [(1, "mini"), (2, "flagship")]
    with pytest.raises(ReviewError, match="highest tier"):
        approval_escalate(job=job, user=reviewer)


def test_an_expired_approval_applies_its_default(model_server, workers):
    setup = governed(model_server.base_url)
    workers.start()
    job = finished(setup.submit(UNSURE))
    ApprovalRequest.objects.filter(job=job).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert approvals_expire_due() >= 1
    job.refresh_from_db()
    assert job.status == JobStatus.EXPIRED
    assert event_types(job)[-1] == "approval.expired"


def test_replay_is_a_new_linked_job_and_the_original_never_changes(model_server, workers, reviewers):
    reviewer, _ = reviewers
    setup = governed(model_server.base_url)
    workers.start()
    original = finished(setup.submit("[task:classification] [confidence:nano=0.95] replay me"))
    before = (original.status, original.result, original.version, len(event_types(original)))
    replay = finished(job_replay(job=original, user=reviewer))
    original.refresh_from_db()
    assert replay.pk != original.pk and replay.replay_of_id == original.pk
    assert replay.result == original.result
    assert (original.status, original.result, original.version, len(event_types(original))) == before


def _events(job):
    from audit.selectors import events_for_job

    return list(events_for_job(job.pk))
