"""The review API: a signed-in person lists held jobs and decides them through the services the web UI
calls — approvals count once per distinct eligible person, a stale view is refused, a rejection needs
a reason, the held answer is in no response, and an application's key decides nothing."""

from __future__ import annotations

import json
import re

import pytest
from django.db import connection, transaction
from rest_framework.test import APIClient

from audit.models import LedgerEvent
from controlplane.roles import Role
from routing.models import ApprovalDecision, ApprovalRequest, Job, JobStatus
from tests.support.builders import active_policy, held_job
from tests.support.factories import UserFactory
from tests.support.governed import governed
from tests.support.personas import client_with, key_for
from tests.support.workers import finished

# A value that appears nowhere but in the held answer.
AMOUNT = 80417
HELD_CONTENT = f"Refunding {AMOUNT} to the customer."
REFUND_CALL = {"id": "c1", "name": "issue_refund", "arguments": {"amount": AMOUNT}}
UNSURE = "[task:classification] [confidence:nano=0.2,mini=0.3,flagship=0.4] unsure"


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def signed_in(user, *, csrf_checks: bool = False) -> APIClient:
    client = APIClient(enforce_csrf_checks=csrf_checks)
    client.force_login(user)
    return client


def reviewer() -> object:
    return UserFactory(roles=[Role.REVIEWER])


def mentions(text: str, value: object) -> bool:
    return re.search(rf"(?<![0-9a-zA-Z_]){re.escape(str(value))}(?![0-9a-zA-Z_])", text) is not None


def decide(client, job, action: str, version: int | None = None, **body):
    if version is None:
        version = Job.objects.get(pk=job.pk).version
    return client.post(f"/api/v1/review/jobs/{job.pk}/{action}", {"expected_version": version, **body}, format="json")


@pytest.fixture
def version(db):
    return active_policy()


def held_refund(version, **fields) -> Job:
    return held_job(version=version, rule="refunds-over-100", content=HELD_CONTENT, tool_calls=[REFUND_CALL], **fields)


def approval_events(job) -> list[LedgerEvent]:
    return list(LedgerEvent.objects.filter(subject_job=job.pk, event_type__startswith="approval.").order_by("id"))


# --- approvals: enough distinct eligible people, then the answer is released -------------------------


def test_approval_releases_the_answer_only_once_enough_distinct_reviewers_approved(version):
    job = held_refund(version, required=2)
    first, second = signed_in(reviewer()), signed_in(reviewer())

    response = decide(first, job, "approve", reason="amount checked against the order")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "awaiting_approval"
    assert body["result"] is None and body["result_withheld"] == "awaiting_approval"
    assert (body["approval"]["approvals"], body["approval"]["required_approvers"]) == (1, 2)
    assert body["version"] == 2
    assert not mentions(json.dumps(body), AMOUNT)

    again = decide(first, job, "approve")
    assert again.status_code == 403, again.json()
    assert again.json()["code"] == "already_decided"
    assert "someone else" in again.json()["detail"]
    assert Job.objects.get(pk=job.pk).status == JobStatus.AWAITING_APPROVAL

    response = decide(second, job, "approve", reason="agreed")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "completed"
    assert body["result"]["output"]["content"] == HELD_CONTENT  # released: the application may read it now
    assert [d["kind"] for d in body["approval"]["decisions"]] == ["approve", "approve"]
    assert ApprovalRequest.objects.get(job=job).status == "approved"


def test_each_decision_is_in_the_ledger_with_the_person_who_took_it(version):
    job = held_refund(version, required=2)
    people = [reviewer(), reviewer()]
    for person in people:
        assert decide(signed_in(person), job, "approve", reason=f"checked by {person.username}").status_code == 200
    approved = [e for e in approval_events(job) if e.event_type == "approval.approved"]
    assert [(e.actor_kind, e.actor_id) for e in approved] == [("user", str(p.pk)) for p in people]
    assert [(e.body["approvals"], e.body["final"]) for e in approved] == [(1, False), (2, True)]
    assert approved[0].body["reason"] == f"checked by {people[0].username}"
    completed = LedgerEvent.objects.filter(subject_job=job.pk, event_type="job.completed").get()
    assert completed.body["by"] == "approval"


def test_a_stale_version_is_refused_with_409_and_nothing_is_decided(version):
    job = held_refund(version)
    seen = Job.objects.get(pk=job.pk).version
    assert decide(signed_in(reviewer()), job, "reject", version=seen, reason="wrong amount").status_code == 200
    late = decide(signed_in(reviewer()), job, "approve", version=seen)
    assert late.status_code == 409, late.json()
    assert late.json()["code"] == "stale_version"
    assert "another reviewer acted" in late.json()["detail"]
    assert ApprovalDecision.objects.filter(request__job=job).count() == 1
    assert [e.event_type for e in approval_events(job)] == ["approval.requested", "approval.rejected"]

    fresh = decide(signed_in(reviewer()), job, "approve")  # with the current version: no longer held
    assert fresh.status_code == 409 and fresh.json()["code"] == "not_held"


def test_a_version_that_is_not_current_is_refused_even_before_anyone_acted(version):
    job = held_refund(version)
    response = decide(signed_in(reviewer()), job, "approve", version=Job.objects.get(pk=job.pk).version + 1)
    assert response.status_code == 409
    assert not ApprovalDecision.objects.filter(request__job=job).exists()


# --- rejection, override, escalation -----------------------------------------------------------------


@pytest.mark.parametrize("reason", [None, "", "   "])
def test_a_rejection_without_a_reason_is_400_and_the_job_stays_held(version, reason):
    job = held_refund(version)
    body = {} if reason is None else {"reason": reason}
    response = decide(signed_in(reviewer()), job, "reject", **body)
    assert response.status_code == 400, response.json()
    problem = response.json()
    assert response["Content-Type"] == "application/problem+json"
    assert problem["code"] == "validation_error"
    assert [e["field"] for e in problem["errors"]] == ["reason"]
    assert Job.objects.get(pk=job.pk).status == JobStatus.AWAITING_APPROVAL
    assert [e.event_type for e in approval_events(job)] == ["approval.requested"]


def test_a_rejection_with_a_reason_ends_the_job_and_its_reason_stays_out_of_the_response(version):
    job = held_refund(version)
    response = decide(signed_in(reviewer()), job, "reject", reason=f"{AMOUNT} is far more than the order")
    assert response.status_code == 200
    assert response.json()["status"] == "rejected" and response.json()["result"] is None
    assert not mentions(response.content.decode(), AMOUNT)
    assert Job.objects.get(pk=job.pk).status_reason == f"{AMOUNT} is far more than the order"


def test_an_override_with_another_steps_output_is_a_first_approval_that_others_must_confirm(version):
    job = held_refund(version, required=2)
    client = signed_in(reviewer())
    detail = client.get(f"/api/v1/review/jobs/{job.pk}").json()
    nano = next(step for step in detail["steps"] if step["tier"] == "nano")

    response = decide(client, job, "override", reason="nano had it right", step=nano["id"])
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "awaiting_approval"  # the proposal needs a second person
    assert body["result"] is None
    assert body["approval"]["approvals"] == 1 and "label: bug" not in response.content.decode()

    confirmed = decide(signed_in(reviewer()), job, "approve")
    assert confirmed.json()["status"] == "completed"
    assert confirmed.json()["result"]["output"]["content"] == "label: bug"
    assert confirmed.json()["status_reason"] == "the answer was edited by reviewers and approved"


def test_an_override_with_an_edited_output_and_its_refusals(version):
    job = held_refund(version)
    client = signed_in(reviewer())
    edited = {"content": "Refunding 90 once the order is found.", "tool_calls": []}

    no_reason = decide(client, job, "override", output=edited)
    assert no_reason.status_code == 400 and no_reason.json()["errors"][0]["field"] == "reason"
    both = decide(client, job, "override", reason="r", output=edited, step=1)
    assert both.status_code == 400 and both.json()["errors"][0]["field"] == "output"
    foreign = decide(client, job, "override", reason="r", step=2**40)
    assert foreign.status_code == 400 and foreign.json()["code"] == "unknown_step"
    assert foreign.json()["errors"][0]["field"] == "step"
    # The job was offered no tools: the policy blocks a proposal that calls one, whoever approves it.
    calling = {"content": None, "tool_calls": [{"name": "issue_refund", "arguments": {"amount": 90}}]}
    blocked = decide(client, job, "override", reason="r", output=calling)
    assert blocked.status_code == 422 and blocked.json()["code"] == "blocked_by_policy"
    assert not ApprovalDecision.objects.filter(request__job=job).exists()

    response = decide(client, job, "override", reason="the order was 90", output=edited)
    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "completed"  # one approver needed: the overriding reviewer's
    assert response.json()["result"]["output"] == edited


def test_escalation_from_the_highest_tier_is_409_and_from_a_lower_one_requeues(version):
    top = held_refund(version, tier="flagship")
    refused = decide(signed_in(reviewer()), top, "escalate")
    assert refused.status_code == 409 and refused.json()["code"] == "highest_tier"

    job = held_refund(version, tier="mini")
    response = decide(signed_in(reviewer()), job, "escalate", reason="want the flagship's answer")
    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "queued"
    assert Job.objects.get(pk=job.pk).constraints["min_tier"] == "flagship"


# --- the held answer is in no response ---------------------------------------------------------------


def test_the_held_answer_is_in_neither_the_list_nor_the_detail(version):
    job = held_refund(version, required=2)
    Job.objects.filter(pk=job.pk).update(status_reason=f"tool call #0 'issue_refund': args.amount is {AMOUNT}")
    ApprovalRequest.objects.filter(job=job).update(reasons=[f"args.amount is {AMOUNT}, > 100"])
    client = signed_in(reviewer())

    listed = client.get("/api/v1/review/jobs", {"rule": "refunds-over-100", "page_size": 200})
    assert listed.status_code == 200, listed.json()
    row = next(row for row in listed.json()["results"] if row["id"] == str(job.pk))
    assert row["version"] == 1 and row["may_decide"] is True and row["page"] == f"/jobs/{job.pk}/"
    assert row["approval"]["rule_ids"] == ["refunds-over-100"]
    assert row["approval"]["reasons"] == ["approval rule 'refunds-over-100' holds this answer"]

    detail = client.get(f"/api/v1/review/jobs/{job.pk}")
    assert detail.status_code == 200
    assert detail.json()["result"] is None and detail.json()["result_withheld"] == "awaiting_approval"
    assert all("output" not in step for step in detail.json()["steps"])
    for response in (listed, detail, decide(client, job, "approve")):
        text = response.content.decode()
        assert not mentions(text, AMOUNT) and "Refunding" not in text


# --- who may call: a person, signed in, with the role, within reach, eligible ------------------------


def test_an_applications_key_decides_nothing_even_one_minted_by_a_reviewer(version):
    job = held_refund(version)
    key = client_with(key_for(job.application, "jobs:read", "jobs:write", owner=reviewer()))
    for response in (key.get("/api/v1/review/jobs"), decide(key, job, "approve")):
        assert response.status_code == 403, response.json()
        assert response.json()["code"] == "person_required"
    assert Job.objects.get(pk=job.pk).status == JobStatus.AWAITING_APPROVAL


def test_without_a_session_nothing_is_read_or_decided(version):
    job = held_refund(version)
    for response in (APIClient().get("/api/v1/review/jobs"), decide(APIClient(), job, "approve")):
        assert response.status_code == 403
        assert response.json()["code"] == "not_authenticated"


def test_a_decision_needs_the_sessions_csrf_token(version):
    job = held_refund(version)
    client = signed_in(reviewer(), csrf_checks=True)
    assert client.get(f"/api/v1/review/jobs/{job.pk}").status_code == 200  # reads need none
    refused = decide(client, job, "approve")
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    assert Job.objects.get(pk=job.pk).status == JobStatus.AWAITING_APPROVAL

    client.get(f"/jobs/{job.pk}/")  # the job's page hands out the session's token, as any form of the UI
    token = client.cookies["csrftoken"].value
    response = client.post(
        f"/api/v1/review/jobs/{job.pk}/approve", {"expected_version": 1}, format="json", HTTP_X_CSRFTOKEN=token
    )
    assert response.status_code == 200, response.json()


def test_nobody_approves_a_job_they_submitted(version):
    person = reviewer()
    job = held_refund(version, submitted_by=person)
    response = decide(signed_in(person), job, "approve")
    assert response.status_code == 403 and response.json()["code"] == "own_job"
    listed = signed_in(person).get("/api/v1/review/jobs", {"page_size": 200}).json()["results"]
    assert next(row for row in listed if row["id"] == str(job.pk))["may_decide"] is False


def test_an_auditor_reads_the_queue_but_decides_nothing(version):
    job = held_refund(version)
    auditor = signed_in(UserFactory(roles=[Role.AUDITOR]))
    assert auditor.get(f"/api/v1/review/jobs/{job.pk}").json()["may_decide"] is False
    response = decide(auditor, job, "approve")
    assert response.status_code == 403 and response.json()["code"] == "role_required"


def held_for(version, *groups) -> Job:
    job = held_refund(version)
    ApprovalRequest.objects.filter(job=job).update(
        requirements=[{"rule": f"rule-for-{group}", "group": group, "approvers": 1} for group in groups]
    )
    return job


def test_a_policy_admin_reaches_only_the_jobs_whose_rules_name_their_group(version):
    named, unnamed = held_for(version, "policy_admin"), held_for(version, "reviewer")
    admin = signed_in(UserFactory(roles=[Role.POLICY_ADMIN]))

    listed = {row["id"] for row in admin.get("/api/v1/review/jobs", {"page_size": 200}).json()["results"]}
    assert str(named.pk) in listed and str(unnamed.pk) not in listed
    for response in (admin.get(f"/api/v1/review/jobs/{unnamed.pk}"), decide(admin, unnamed, "approve")):
        assert response.status_code == 404 and response.json()["code"] == "not_found"
    assert admin.get(f"/api/v1/review/jobs/{named.pk}").json()["may_decide"] is True
    assert decide(admin, named, "approve").json()["status"] == "completed"
    # decided: no longer held, so no longer within a policy admin's reach
    assert admin.get(f"/api/v1/review/jobs/{named.pk}").status_code == 404


def test_a_reviewer_is_not_eligible_where_only_policy_admins_are_named(version):
    job = held_for(version, "policy_admin")
    response = decide(signed_in(reviewer()), job, "approve")
    assert response.status_code == 403 and response.json()["code"] == "not_in_group"
    assert "only members of 'policy_admin'" in response.json()["detail"]


def test_an_unknown_job_is_404(version):
    client = signed_in(reviewer())
    assert client.get("/api/v1/review/jobs/not-a-uuid").status_code == 404
    response = client.post(
        "/api/v1/review/jobs/00000000-0000-4000-8000-000000000000/approve", {"expected_version": 0}, format="json"
    )
    assert response.status_code == 404


def test_the_list_is_oldest_first_and_paginated(version):
    application = held_refund(version).application
    jobs = [held_refund(version, application=application) for _ in range(3)]
    client = signed_in(reviewer())
    first = client.get("/api/v1/review/jobs", {"application": application.slug, "page_size": 2}).json()
    second = client.get(first["next"]).json()
    seen = [row["id"] for row in first["results"] + second["results"]]
    assert len(seen) == 4 and set(map(str, (job.pk for job in jobs))) <= set(seen)
    assert second["next"] is None
    bad = client.get("/api/v1/review/jobs", {"cursor": "nonsense"})
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "query:cursor"


# --- one transaction: the decision and its ledger event commit together -----------------------------


def test_the_decision_and_its_ledger_event_are_written_in_one_transaction(live_db):
    with transaction.atomic():
        job = held_refund(active_policy())
    person = reviewer()
    response = decide(signed_in(person), job, "approve", reason="checked")
    assert response.status_code == 200, response.json()
    event = LedgerEvent.objects.get(subject_job=job.pk, event_type="approval.approved")
    with connection.cursor() as cursor:
        cursor.execute("SELECT xmin::text::bigint, version FROM routing_job WHERE id = %s", [job.pk])
        job_xact, job_version = cursor.fetchone()
    # The job's move (its version, here) and the event were written by one transaction: xmin is the low
    # 32 bits of the writing transaction's id, the ledger keeps the whole 64-bit id.
    assert job_version == 2
    assert job_xact == event.xact_id % 2**32
    assert ApprovalDecision.objects.filter(request__job=job, actor=person).exists()
    assert (event.actor_kind, event.actor_id) == ("user", str(person.pk))


# --- end to end: a job an application submits, held by its policy, decided by people --------------------


@pytest.mark.slow
def test_an_application_never_approves_its_own_job_and_people_release_it(model_server, workers):
    submitter, colleague = reviewer(), reviewer()
    setup = governed(model_server.base_url)
    app = client_with(key_for(setup.application, "jobs:write", "jobs:read", owner=submitter))
    workers.start()
    body = {
        "task_type": "classification",
        "messages": [{"role": "user", "content": UNSURE}],
        "policy": setup.policy.name,
    }
    job = finished(Job.objects.get(pk=app.post("/api/v1/jobs", body, format="json").json()["id"]))
    assert job.status == JobStatus.AWAITING_APPROVAL

    assert decide(app, job, "approve").json()["code"] == "person_required"  # the application's own key
    own = decide(signed_in(submitter), job, "approve")  # the person the key acts for
    assert own.status_code == 403 and own.json()["code"] == "own_job"
    assert app.get(f"/api/v1/jobs/{job.pk}").json()["result"] is None

    approved = decide(signed_in(colleague), job, "approve", reason="the guess is right")
    assert approved.status_code == 200 and approved.json()["status"] == "completed"
    assert app.get(f"/api/v1/jobs/{job.pk}").json()["result"]["output"] is not None


# --- the schema: what a signed-in reviewer gets is what the schema says ----------------------------------


def test_the_review_operations_conform_to_the_schema_for_a_signed_in_reviewer(version, client):
    import schemathesis
    from django.middleware.csrf import _get_new_csrf_string
    from hypothesis import given

    from tests.support.schema import CHECKS, EXAMPLES, wsgi_keeping_the_test_connection

    job = held_refund(version, required=3)
    client.force_login(reviewer())
    token = _get_new_csrf_string()
    session = {"sessionid": client.cookies["sessionid"].value, "csrftoken": token}
    headers = {"X-CSRFToken": token}
    bodies = {"approve": {"expected_version": 1}, "reject": {"expected_version": 1, "reason": "no"}}
    failures, ran, statuses = [], set(), {}
    with wsgi_keeping_the_test_connection() as application:
        api = schemathesis.openapi.from_wsgi("/api/schema/", application)
        for result in api.get_all_operations():
            operation = result.ok()
            operation_id = operation.definition.raw.get("operationId")
            if not operation_id.startswith("review_"):
                continue
            ran.add(operation_id)

            @given(case=operation.as_strategy())
            @EXAMPLES
            def run(case) -> None:
                case.cookies = {**(case.cookies or {}), **session}
                case.call_and_validate(headers=headers, checks=CHECKS)

            try:
                run()
                # And on the held job itself (the generated ids are not found).
                action = operation_id.removeprefix("review_jobs_")
                body = {}
                if operation.method.upper() == "POST":
                    body = {"body": bodies.get(action, {"expected_version": 1}), "media_type": "application/json"}
                path = {"job_id": str(job.pk)} if "{job_id}" in operation.path else None
                known = operation.Case(path_parameters=path, cookies=session, **body)
                statuses[action] = known.call_and_validate(headers=headers, checks=CHECKS).status_code
            except Exception as failure:
                failures.append(f"{operation_id}: {failure}")
    assert ran == {f"review_jobs_{name}" for name in ("list", "retrieve", "approve", "reject", "override", "escalate")}
    assert not failures, "\n\n".join(failures)
    # Signed in, on the held job: read, approved (one of three); then, on the version read before that
    # approval, escalation refused (409), an override without a reason (400), a rejection (409: stale).
    assert statuses == {"list": 200, "retrieve": 200, "approve": 200, "escalate": 409, "override": 400, "reject": 409}
