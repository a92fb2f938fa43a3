"""A job's page tells its whole story; reviewers approve, reject, override, escalate and replay on it."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from routing.models import ApprovalDecision, Job, JobStatus
from tests.support.builders import active_policy, held_job
from tests.support.governed import REFUND_TOOL


@pytest.fixture
def version(people):
    return active_policy()


def page_of(client, job):
    response = client.get(reverse("job", kwargs={"job_id": job.pk}))
    assert response.status_code == 200
    return response.content.decode()


def test_it_shows_the_route_the_steps_the_approval_and_the_ledger(as_user, version):
    job = held_job(version=version)
    page = page_of(as_user("reviewer"), job)
    for fact in (
        "cheap-first",  # the rule
        "task_type is &#x27;classification&#x27;",  # why it matched
        "max_tier is nano",  # a tier removed
        "nano-b",  # a deployment skipped
        f"{version.policy.name} v{version.number}",
        reverse("policy-version", kwargs={"name": version.policy.name, "number": version.number}),
        "unsure-after-flagship",
        "0.31 &lt; 0.80",  # the nano step's confidence against its threshold
        "job.escalated",
        "approval.requested",
        "Verify this job's chain",
    ):
        assert fact in page, fact


def test_model_output_is_shown_as_inert_text(as_user, version):
    job = held_job(
        version=version,
        content='<script>alert("pwned")</script><img src=x onerror=alert(1)>',
        tool_calls=[{"id": "c1", "name": "issue_refund", "arguments": {"note": "<script>x()</script>"}}],
    )
    page = page_of(as_user("reviewer"), job)
    assert "<script>alert" not in page and "<img src=x" not in page and "<script>x()" not in page
    assert "&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;" in page
    assert "&lt;script&gt;x()&lt;/script&gt;" in page


def test_only_a_reviewer_sees_the_decision_forms(as_user, version):
    job = held_job(version=version)
    assert "Confirm" not in page_of(as_user("auditor"), job)
    auditor_page = page_of(as_user("auditor"), job)
    assert 'action="/jobs/' not in auditor_page.split("Ledger events")[0].replace("verify", "")
    assert "Your role can read it but not decide it" in auditor_page
    assert f'name="expected_version" value="{job.version}"' in page_of(as_user("reviewer"), job)


def test_approving_completes_the_job_and_says_so(as_user, version):
    job = held_job(version=version)
    client = as_user("reviewer")
    response = client.post(reverse("job-approve", kwargs={"job_id": job.pk}),
                           {"expected_version": job.version, "reason": "fine"}, follow=True)
    assert response.status_code == 200
    assert "your approval is recorded; the job is completed" in response.content.decode()
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED


def test_two_reviewers_at_once_one_wins_and_the_other_is_told(as_user, version):
    job = held_job(version=version)
    seen = job.version
    first = as_user("reviewer").post(reverse("job-approve", kwargs={"job_id": job.pk}),
                                     {"expected_version": seen})
    assert first.status_code == 302
    second = as_user("reviewer2").post(reverse("job-reject", kwargs={"job_id": job.pk}),
                                       {"expected_version": seen, "reason": "looks wrong"})
    assert second.status_code == 409
    assert "another reviewer acted on this job while you were looking at it" in second.content.decode()
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED


def test_a_two_approver_rule_needs_two_different_people(as_user, version):
    job = held_job(version=version, rule="refunds-over-100", required=2)
    client = as_user("reviewer")
    client.post(reverse("job-approve", kwargs={"job_id": job.pk}), {"expected_version": 1})
    job.refresh_from_db()
    assert job.status == JobStatus.AWAITING_APPROVAL
    again = client.post(reverse("job-approve", kwargs={"job_id": job.pk}), {"expected_version": job.version})
    assert again.status_code == 400
    assert "a second approval must come from someone else" in again.content.decode()
    as_user("reviewer2").post(reverse("job-approve", kwargs={"job_id": job.pk}), {"expected_version": job.version})
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED


def test_nobody_approves_their_own_job(as_user, people, version):
    job = held_job(version=version, submitted_by=people["reviewer"])
    response = as_user("reviewer").post(reverse("job-approve", kwargs={"job_id": job.pk}), {"expected_version": 1})
    assert response.status_code == 400
    assert "you submitted this job; someone else must decide its approval" in response.content.decode()


def test_a_rejection_needs_a_reason(as_user, version):
    job = held_job(version=version)
    response = as_user("reviewer").post(reverse("job-reject", kwargs={"job_id": job.pk}), {"expected_version": 1})
    assert response.status_code == 400
    assert "Give a reason: it is kept in the ledger." in response.content.decode()
    job.refresh_from_db()
    assert job.status == JobStatus.AWAITING_APPROVAL


def test_a_rejection_with_a_reason_rejects(as_user, version):
    job = held_job(version=version)
    as_user("reviewer").post(reverse("job-reject", kwargs={"job_id": job.pk}),
                             {"expected_version": 1, "reason": "wrong queue"})
    job.refresh_from_db()
    assert (job.status, job.status_reason) == (JobStatus.REJECTED, "wrong queue")


def test_a_missing_or_bad_version_is_a_clear_400(as_user, version):
    job = held_job(version=version)
    client = as_user("reviewer")
    assert client.post(reverse("job-approve", kwargs={"job_id": job.pk}), {}).status_code == 400
    assert client.post(reverse("job-approve", kwargs={"job_id": job.pk}), {"expected_version": "x"}).status_code == 400


def test_escalating_sends_the_job_back_to_a_higher_tier(as_user, version):
    job = held_job(version=version, tier="mini")
    response = as_user("reviewer").post(reverse("job-escalate", kwargs={"job_id": job.pk}), {"expected_version": 1})
    assert response.status_code == 302
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED
    assert job.constraints["min_tier"] == "flagship"


def test_escalating_a_flagship_answer_is_refused_with_the_reason(as_user, version):
    job = held_job(version=version, tier="flagship")
    response = as_user("reviewer").post(reverse("job-escalate", kwargs={"job_id": job.pk}), {"expected_version": 1})
    assert response.status_code == 400
    assert "the answer already came from the highest tier" in response.content.decode()


def override_fields(job, **fields):
    return {"expected_version": job.version, "source": "edit", "content": "label: account", "reason": "", **fields}


def test_an_override_shows_its_diff_before_anything_changes(as_user, version):
    job = held_job(version=version, content="label: billing")
    response = as_user("reviewer").post(
        reverse("job-override-preview", kwargs={"job_id": job.pk}),
        override_fields(job, reason="the customer asked about their login"),
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 200
    text = response.content.decode()
    assert "<html" not in text
    assert re.search(r'diff-del".*<code>label: billing</code>', text)
    assert re.search(r'diff-add".*<code>label: account</code>', text)
    assert "Confirm the override" in text
    job.refresh_from_db()
    assert job.status == JobStatus.AWAITING_APPROVAL and job.result["output"]["content"] == "label: billing"


def test_a_confirmed_override_replaces_the_answer_with_a_reason(as_user, version):
    job = held_job(version=version, content="label: billing")
    response = as_user("reviewer").post(
        reverse("job-override", kwargs={"job_id": job.pk}), override_fields(job, reason="it is an account question")
    )
    assert response.status_code == 302
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED
    assert job.result["output"]["content"] == "label: account" and job.result["overridden"] is True
    # The override closes the held request and is the first (here the only needed) approval of its own.
    decisions = ApprovalDecision.objects.filter(request__job=job).order_by("id")
    assert [(d.kind, d.reason) for d in decisions] == [
        ("override", "it is an account question"),
        ("approve", "it is an account question"),
    ]


def test_an_override_can_edit_tool_arguments(as_user, version):
    call = {"id": "c1", "name": "issue_refund", "arguments": {"amount": 150}}
    job = held_job(version=version, tool_calls=[call], content="Calling issue_refund.")
    # The job offered the tool (an edited call to a tool it never offered is blocked, so refused).
    Job.objects.filter(pk=job.pk).update(request={**job.request, "tools": REFUND_TOOL})
    preview = as_user("reviewer").post(
        reverse("job-override-preview", kwargs={"job_id": job.pk}),
        override_fields(job, content="Calling issue_refund.", arguments_0='{"amount": 90}', reason="policy cap"),
    )
    assert preview.status_code == 200
    assert re.search(r'diff-add".*&quot;amount&quot;: 90', preview.content.decode())
    as_user("reviewer").post(
        reverse("job-override", kwargs={"job_id": job.pk}),
        override_fields(job, content="Calling issue_refund.", arguments_0='{"amount": 90}', reason="policy cap"),
    )
    job.refresh_from_db()
    assert job.result["output"]["tool_calls"] == [{**call, "arguments": {"amount": 90}}]
    assert job.status == JobStatus.COMPLETED  # 90 triggers no rule; one approver was needed


def test_an_override_with_bad_json_arguments_is_a_clear_400(as_user, version):
    job = held_job(version=version, tool_calls=[{"id": "c1", "name": "issue_refund", "arguments": {}}])
    response = as_user("reviewer").post(
        reverse("job-override-preview", kwargs={"job_id": job.pk}),
        override_fields(job, arguments_0="{amount: ", reason="x"),
    )
    assert response.status_code == 400
    assert "Not valid JSON" in response.content.decode()


def test_an_override_can_take_another_steps_output(as_user, version):
    job = held_job(version=version)
    nano = job.steps.get(index=0)
    response = as_user("reviewer").post(
        reverse("job-override", kwargs={"job_id": job.pk}),
        override_fields(job, source="step", step=nano.pk, reason="nano was right"),
    )
    assert response.status_code == 302
    job.refresh_from_db()
    assert job.result["output"] == nano.output and job.result["step_index"] == 0


def test_an_override_needs_a_reason(as_user, version):
    job = held_job(version=version)
    response = as_user("reviewer").post(reverse("job-override", kwargs={"job_id": job.pk}), override_fields(job))
    assert response.status_code == 400
    assert "Give a reason" in response.content.decode()
    job.refresh_from_db()
    assert job.status == JobStatus.AWAITING_APPROVAL


def test_an_override_cannot_take_a_step_of_another_job(as_user, version):
    job, other = held_job(version=version), held_job(version=version)
    response = as_user("reviewer").post(
        reverse("job-override", kwargs={"job_id": job.pk}),
        override_fields(job, source="step", step=other.steps.first().pk, reason="sneaky"),
    )
    assert response.status_code == 400
    assert "That step does not belong to this job" in response.content.decode()


def test_a_replay_runs_as_a_new_job_and_is_shown_beside_the_original(as_user, people, version):
    job = held_job(version=version)
    response = as_user("reviewer").post(reverse("job-replay", kwargs={"job_id": job.pk}), {"policy_version": ""})
    replay = Job.objects.get(replay_of=job)
    assert response.status_code == 302
    assert response["Location"] == reverse("job-compare", kwargs={"job_id": replay.pk})
    assert replay.submitted_by == people["reviewer"] and replay.policy_version == version
    page = as_user("auditor").get(response["Location"]).content.decode()
    assert "Original" in page and "Replay" in page and str(job.pk) in page and str(replay.pk) in page
    assert 'hx-trigger="every 2s"' in page  # the replay is still queued: the page polls


def test_a_replay_under_another_policy_version(as_user, people, version):
    other = active_policy()
    job = held_job(version=version)
    as_user("reviewer").post(reverse("job-replay", kwargs={"job_id": job.pk}), {"policy_version": other.pk})
    assert Job.objects.get(replay_of=job).policy_version == other


def test_compare_of_a_job_that_is_no_replay_is_404(as_user, version):
    job = held_job(version=version)
    assert as_user("reviewer").get(reverse("job-compare", kwargs={"job_id": job.pk})).status_code == 404


def test_an_unknown_job_is_404(as_user):
    import uuid

    assert as_user("reviewer").get(reverse("job", kwargs={"job_id": uuid.uuid4()})).status_code == 404


def test_the_jobs_list_filters_by_status_and_pages_by_keyset(as_user, version, settings):
    settings.ARBITER_UI_PAGE_SIZE = 5
    job = held_job(version=version)
    response = as_user("auditor").get(reverse("jobs"), {"status": "awaiting_approval"})
    assert response.status_code == 200 and str(job.pk)[:8] in response.content.decode()
    assert as_user("auditor").get(reverse("jobs"), {"status": "nonsense"}).status_code == 200


def test_the_side_by_side_marks_what_differs(as_user, version):
    job = held_job(version=version, content="label: billing")
    replay = held_job(version=version, content="label: account", application=job.application)
    Job.objects.filter(pk=replay.pk).update(replay_of=job)
    page = as_user("reviewer").get(reverse("job-compare", kwargs={"job_id": replay.pk})).content.decode()
    assert "The replay differs in:</strong> output." in page
    assert page.count("≠ differs") == 1


def test_a_job_page_costs_the_same_number_of_queries_however_long_its_story(as_user, people, version):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from audit import ledger
    from audit.ledger import Actor

    job = held_job(version=version)
    client = as_user("auditor")

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            client.get(reverse("job", kwargs={"job_id": job.pk}))
        return len(captured)

    def note(actor: Actor) -> None:
        ledger.append("job.noted", actor=actor, subject={"job": job.pk}, body={})

    note(Actor.user(people["reviewer"].pk))  # people among the actors: one query names them all
    before = queries()
    for person in ("reviewer2", "admin", "auditor"):
        note(Actor.user(people[person].pk))
    note(Actor.system("test"))
    assert queries() == before
