"""An approval counts only while its author is active and still holds the group: checked when the
request is settled, not when the approval was given."""

from __future__ import annotations

import pytest

from controlplane.roles import Role
from review.services import approval_approve
from routing.models import JobStatus
from tests.support.factories import UserFactory
from tests.support.governed import REFUND_TOOL, governed
from tests.support.workers import finished

pytestmark = pytest.mark.slow

REFUND = '[task:general] [confidence:mini=0.9,flagship=0.9] [call:issue_refund {"amount": 5000}] refund'


def test_a_deactivated_persons_approval_does_not_count(model_server, workers):
    setup = governed(model_server.base_url)  # refunds-over-100: 2 approvers
    workers.start()
    job = finished(setup.submit(REFUND, task_type="general", tools=REFUND_TOOL))
    assert job.status == JobStatus.AWAITING_APPROVAL
    alice, bob = UserFactory(roles=[Role.REVIEWER]), UserFactory(roles=[Role.REVIEWER])
    approval_approve(job=job, user=alice, reason="ok")
    alice.is_active = False  # e.g. left the company / account disabled for cause
    alice.save()
    approval_approve(job=job, user=bob, reason="ok")
    job.refresh_from_db()
    assert job.status == JobStatus.AWAITING_APPROVAL, "released with one active approver of the two required"

    approval_approve(job=job, user=UserFactory(roles=[Role.REVIEWER]), reason="ok")
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED
