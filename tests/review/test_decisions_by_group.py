"""A held job's page and its decision actions follow the request's own requirements: a policy admin whose
group a rule names can read the job and approve it, and nobody outside the requirements' groups can."""

from __future__ import annotations

import pytest
from django.urls import reverse

from routing.models import JobStatus
from tests.support.builders import active_policy, held_job


@pytest.fixture
def version(people):
    return active_policy()


def held_for(version, *groups):
    job = held_job(version=version, rule="refunds-over-100")
    request = job.approval_requests.get()
    request.requirements = [{"rule": f"rule-for-{group}", "group": group, "approvers": 1} for group in groups]
    request.save(update_fields=["requirements"])
    return job


def approve(client, job):
    job.refresh_from_db()
    return client.post(reverse("job-approve", kwargs={"job_id": job.pk}),
                       {"expected_version": job.version, "reason": "checked"})


def test_a_policy_admin_a_rule_names_reads_and_approves_and_each_group_is_shown(as_user, version):
    job = held_for(version, "reviewer", "policy_admin")
    admin = as_user("admin")
    page = admin.get(reverse("job", kwargs={"job_id": job.pk})).content.decode()
    assert "1 approver from <em>policy_admin</em>" in page and "1 approver from <em>reviewer</em>" in page
    assert approve(admin, job).status_code == 302
    job.refresh_from_db()
    assert job.status == JobStatus.AWAITING_APPROVAL  # the reviewers' requirement is still open
    page = as_user("reviewer").get(reverse("job", kwargs={"job_id": job.pk})).content.decode()
    assert page.count("1 of 1 approvals") == 1 and page.count("0 of 1 approvals") == 1
    queue = as_user("reviewer").get(reverse("queue")).content.decode()
    assert "0 of 1 <em>reviewer</em> · 1 of 1 <em>policy_admin</em>" in queue
    assert approve(as_user("reviewer"), job).status_code == 302
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED
    # decided: the admin, not a job reader, no longer reads it
    assert admin.get(reverse("job", kwargs={"job_id": job.pk})).status_code == 403


def test_a_policy_admin_no_rule_names_can_neither_read_nor_approve(as_user, version):
    job = held_for(version, "reviewer")
    admin = as_user("admin")
    assert admin.get(reverse("job", kwargs={"job_id": job.pk})).status_code == 403
    refused = approve(admin, job)
    assert refused.status_code == 403
    assert "label: billing" not in refused.content.decode()  # the held answer is not shown to them either
    preview = admin.post(reverse("job-override-preview", kwargs={"job_id": job.pk}),
                         {"expected_version": job.version, "source": "edit", "content": "x", "reason": "r"})
    assert preview.status_code == 403 and "label: billing" not in preview.content.decode()
    job.refresh_from_db()
    assert job.status == JobStatus.AWAITING_APPROVAL


@pytest.mark.parametrize("persona", ["auditor", "outsider"])
def test_people_in_neither_role_cannot_reach_the_approve_action(as_user, version, persona):
    job = held_for(version, "reviewer", "policy_admin")
    assert approve(as_user(persona), job).status_code == 403
    job.refresh_from_db()
    assert job.status == JobStatus.AWAITING_APPROVAL
