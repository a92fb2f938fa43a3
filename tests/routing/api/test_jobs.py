"""The jobs API: submit, read, list, cancel, events; idempotency; one application never sees another's."""

from __future__ import annotations

import uuid

import pytest

from audit.ledger import Actor
from audit.models import LedgerEvent
from routing.models import Job, JobStatus, Policy
from routing.services.policies import policy_create
from tests.support.personas import client_with

pytestmark = pytest.mark.django_db

FULL = {
    "task_type": "extraction",
    "messages": [
        {"role": "system", "content": "Extract the amount."},
        {"role": "user", "content": [{"type": "text", "text": "I paid 42 EUR"}]},
    ],
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "record_amount",
                "description": "store it",
                "parameters": {"type": "object", "properties": {"amount": {"type": "number"}}},
            },
        }
    ],
    "response_format": {"type": "json_schema", "json_schema": {"name": "amount", "schema": {"type": "object"}}},
    "labels": {"region": "eu", "pii": False, "priority": 2},
    "constraints": {"latency_budget_ms": 3000, "cost_cap_usd": 0.05, "min_tier": "nano", "max_tier": "mini"},
    "callback_url": "http://127.0.0.1:9/hook",
    "metadata": {"ticket": "T-1", "nested": {"a": [1, 2]}},
}


def test_it_submits_a_job_with_every_field_and_reads_it_back(owner):
    response = owner.submit(**FULL)
    assert response.status_code == 201, response.json()
    job = response.json()
    assert response["Location"] == f"/api/v1/jobs/{job['id']}"
    stored = Job.objects.get(pk=job["id"])
    assert stored.application == owner.application
    assert stored.request["tools"] == FULL["tools"]
    assert stored.constraints == FULL["constraints"]
    assert stored.labels == FULL["labels"] and stored.metadata == FULL["metadata"]
    assert stored.callback_url == FULL["callback_url"]
    read = owner.client.get(f"/api/v1/jobs/{job['id']}").json()
    assert read["status"] == "queued"
    assert read["policy"] == {"name": owner.setup.policy.name, "version": 1, "sha256": stored.policy_version.sha256}
    assert [event["event_type"] for event in read["ledger_events"]] == ["job.submitted"]


def test_the_detail_shows_route_steps_and_approval_once_there_are_some(owner):
    job_id = owner.submit().json()["id"]
    route = {"plan": {"rule_id": "cheap-first", "steps": []}, "error": None, "explanation": {"notes": []}}
    Job.objects.filter(pk=job_id).update(route=route, status=JobStatus.AWAITING_APPROVAL, final_tier="mini")
    job = Job.objects.get(pk=job_id)
    job.steps.create(
        attempt=1,
        index=0,
        tier="nano",
        deployment=owner.setup.deployments["nano"],
        model="sim-nano",
        prompt_tokens=10,
        completion_tokens=5,
        latency_ms=12,
        confidence=0.4,
        confidence_method="logprob",
        threshold=0.8,
        outcome="escalated",
    )
    from datetime import timedelta

    from django.utils import timezone

    job.approval_requests.create(
        rule_ids=["refunds-over-100"],
        reasons=["refund above 100"],
        required_approvers=2,
        expires_at=timezone.now() + timedelta(hours=4),
    )
    detail = owner.client.get(f"/api/v1/jobs/{job_id}").json()
    assert detail["route"]["rule_id"] == "cheap-first"
    step = detail["steps"][0]
    assert (step["tier"], step["deployment"], step["confidence"], step["threshold"], step["outcome"]) == (
        "nano",
        owner.setup.deployments["nano"].name,
        0.4,
        0.8,
        "escalated",
    )
    assert step["confidence_method"] == "logprob" and step["prompt_tokens"] == 10
    assert detail["approval"]["status"] == "pending"
    assert detail["approval"]["required_approvers"] == 2 and detail["approval"]["approvals"] == 0


def test_another_applications_job_is_404_everywhere(owner, outsider):
    job_id = owner.submit().json()["id"]
    for url in (f"/api/v1/jobs/{job_id}", f"/api/v1/jobs/{job_id}/events"):
        response = outsider.client.get(url)
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"
    assert outsider.client.post(f"/api/v1/jobs/{job_id}/cancel", {}, format="json").status_code == 404
    assert outsider.client.get("/api/v1/jobs").json()["results"] == []
    assert Job.objects.get(pk=job_id).status == JobStatus.QUEUED


@pytest.mark.parametrize("job_id", ["not-a-uuid", str(uuid.uuid4()), "%00"])
def test_an_unknown_job_id_is_404(owner, job_id):
    assert owner.client.get(f"/api/v1/jobs/{job_id}").status_code == 404


def test_the_list_is_newest_first_and_follows_the_cursor(owner):
    ids = [owner.submit(f"question {n}").json()["id"] for n in range(5)]
    first = owner.client.get("/api/v1/jobs", {"page_size": 2}).json()
    assert [job["id"] for job in first["results"]] == ids[::-1][:2]
    second = owner.client.get(first["next"]).json()
    third = owner.client.get(second["next"]).json()
    assert [job["id"] for job in second["results"] + third["results"]] == ids[::-1][2:]
    assert third["next"] is None


def test_the_list_filters_by_status_task_type_and_time(owner):
    first = owner.submit().json()
    reasoning = owner.submit(task_type="reasoning").json()
    Job.objects.filter(pk=first["id"]).update(status=JobStatus.COMPLETED)
    by_status = owner.client.get("/api/v1/jobs", {"status": "completed"}).json()["results"]
    by_type = owner.client.get("/api/v1/jobs", {"task_type": "reasoning"}).json()["results"]
    after = owner.client.get("/api/v1/jobs", {"created_after": reasoning["created_at"]}).json()["results"]
    before = owner.client.get("/api/v1/jobs", {"created_before": reasoning["created_at"]}).json()["results"]
    assert [job["id"] for job in by_status] == [first["id"]]
    assert [job["id"] for job in by_type] == [reasoning["id"]]
    assert [job["id"] for job in after] == [reasoning["id"]]
    assert [job["id"] for job in before] == [first["id"]]


def test_a_summary_has_the_jobs_fields_and_its_policy_version(owner):
    submitted = owner.submit(labels={"region": "eu"}, metadata={"ticket": "T-7"}).json()
    [summary] = owner.client.get("/api/v1/jobs").json()["results"]
    assert summary == {
        "id": submitted["id"],
        "status": submitted["status"],
        "status_reason": submitted["status_reason"],
        "task_type": "classification",
        "labels": {"region": "eu"},
        "metadata": {"ticket": "T-7"},
        "policy": submitted["policy"],
        "final_tier": "",
        "final_confidence": None,
        "escalations": 0,
        "total_cost_usd": "0.00000000",
        "created_at": submitted["created_at"],
        "finished_at": None,
    }
    assert set(summary["policy"]) == {"name", "version", "sha256"}


@pytest.mark.parametrize("jobs", [1, 30])
def test_a_page_of_the_list_costs_the_same_few_queries_however_many_jobs_it_shows(
    owner, jobs, django_assert_max_num_queries
):
    for number in range(jobs):
        owner.submit(f"question {number}", labels={"n": number})
    owner.client.get("/api/v1/jobs")  # the key's once-a-minute last_used_at write happens here
    for filters in ({}, {"status": "queued"}):
        # The key, then the page with its policy versions joined in: nothing per job.
        with django_assert_max_num_queries(2):
            page = owner.client.get("/api/v1/jobs", filters).json()
        assert len(page["results"]) == jobs


def test_cancel_cancels_and_a_second_cancel_is_409(owner):
    job_id = owner.submit().json()["id"]
    response = owner.client.post(f"/api/v1/jobs/{job_id}/cancel", {"reason": "user gave up"}, format="json")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    again = owner.client.post(f"/api/v1/jobs/{job_id}/cancel", {}, format="json")
    assert again.status_code == 409
    assert again.json()["code"] == "job_finished"
    assert LedgerEvent.objects.filter(subject_job=job_id, event_type="job.cancelled").count() == 1


def test_events_lists_the_jobs_ledger_events(owner):
    job_id = owner.submit().json()["id"]
    owner.client.post(f"/api/v1/jobs/{job_id}/cancel", format="json")
    events = owner.client.get(f"/api/v1/jobs/{job_id}/events").json()
    assert [event["event_type"] for event in events] == ["job.submitted", "job.cancelled"]
    assert events[0]["actor"] == {"kind": "application", "id": str(owner.application.pk)}
    assert events[0]["subject"]["job"] == job_id


def test_the_same_idempotency_key_and_body_returns_the_same_job(owner):
    headers = {"HTTP_IDEMPOTENCY_KEY": "order-1234"}
    first = owner.client.post(
        "/api/v1/jobs",
        {"task_type": "ranking", "messages": [{"role": "user", "content": "a"}], "policy": owner.setup.policy.name},
        format="json",
        **headers,
    )
    again = owner.client.post(
        "/api/v1/jobs",
        {"task_type": "ranking", "messages": [{"role": "user", "content": "a"}], "policy": owner.setup.policy.name},
        format="json",
        **headers,
    )
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    assert owner.job_count() == 1


def test_the_same_idempotency_key_with_another_body_is_422(owner):
    headers = {"HTTP_IDEMPOTENCY_KEY": "order-1234"}
    first = owner.client.post(
        "/api/v1/jobs",
        {"task_type": "ranking", "messages": [{"role": "user", "content": "a"}], "policy": owner.setup.policy.name},
        format="json",
        **headers,
    )
    other = owner.client.post(
        "/api/v1/jobs",
        {"task_type": "ranking", "messages": [{"role": "user", "content": "b"}], "policy": owner.setup.policy.name},
        format="json",
        **headers,
    )
    assert other.status_code == 422
    assert other.json()["code"] == "idempotency_conflict"
    assert other.json()["job_id"] == first.json()["id"]
    assert owner.job_count() == 1


def test_idempotency_keys_are_per_application(owner, outsider):
    headers = {"HTTP_IDEMPOTENCY_KEY": "shared-key"}
    assert (
        owner.client.post(
            "/api/v1/jobs",
            {"task_type": "ranking", "messages": [{"role": "user", "content": "a"}], "policy": owner.setup.policy.name},
            format="json",
            **headers,
        ).status_code
        == 201
    )
    assert outsider.submit(**{}).status_code == 201
    response = outsider.client.post(
        "/api/v1/jobs",
        {"task_type": "ranking", "messages": [{"role": "user", "content": "a"}], "policy": owner.setup.policy.name},
        format="json",
        **headers,
    )
    assert response.status_code == 201


def test_an_unknown_policy_is_422_on_the_policy_field(owner):
    response = owner.submit(policy="no-such-policy")
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "policy"
    assert owner.job_count() == 0


def test_a_policy_without_an_active_version_is_422_naming_it(owner):
    policy_create(name=f"drafts-only-{uuid.uuid4().hex[:6]}", actor=Actor.system("test"))
    name = Policy.objects.latest("id").name
    response = owner.submit(policy=name)
    assert response.status_code == 422
    assert response.json()["errors"][0] == {"field": "policy", "message": f"policy {name!r} has no active version"}
    assert owner.job_count() == 0


def test_without_a_policy_the_default_policys_active_version_governs(owner):
    body = {"task_type": "classification", "messages": [{"role": "user", "content": "which queue?"}]}
    Policy.objects.filter(is_default=True).update(is_default=False)
    response = owner.client.post("/api/v1/jobs", body, format="json")
    assert response.status_code == 422
    assert "no default policy is configured" in response.json()["errors"][0]["message"]
    Policy.objects.filter(pk=owner.setup.policy.pk).update(is_default=True)
    response = owner.client.post("/api/v1/jobs", body, format="json")
    assert response.status_code == 201
    job = Job.objects.get(pk=response.json()["id"])
    assert job.policy_version == owner.setup.policy.versions.get(status="active")


def test_jobs_api_answers_json_problems_for_unauthenticated_reads(owner):
    response = client_with(None).get("/api/v1/jobs")
    assert response.status_code == 401
    assert response.json()["type"] == "urn:arbiter:problem:not-authenticated"


def test_the_answer_to_a_submit_is_the_job_a_read_returns(owner):
    # The 201 is built from what the submit wrote, not read back: it must still be the same document.
    response = owner.submit(**FULL)
    assert response.status_code == 201
    read = owner.client.get(f"/api/v1/jobs/{response.json()['id']}")
    assert response.json() == read.json()


def test_each_submit_is_validated_on_its_own(owner):
    # A thread validates its requests with one reused serializer (StrictSerializer.for_input): nothing of
    # one request's input, errors or result may reach the next one's.
    refused = owner.submit(task_type="nonsense", bogus=1)
    assert refused.status_code == 400
    accepted = owner.submit(**FULL)
    assert accepted.status_code == 201, accepted.json()
    plain = owner.submit(task_type="classification", messages=[{"role": "user", "content": "hello"}])
    assert plain.status_code == 201, plain.json()
    stored = Job.objects.get(pk=plain.json()["id"])
    assert stored.labels == {} and stored.constraints == {} and stored.callback_url == ""
    assert owner.submit(task_type="nonsense", bogus=1).json() == refused.json()


def test_each_job_is_rendered_on_its_own(owner, outsider):
    # A thread renders its jobs with one reused output serializer (output_serializer): one answer must not
    # carry another job's fields, ledger events or steps, and an earlier answer must not change.
    full = owner.submit(**FULL)
    plain = owner.submit(task_type="classification", messages=[{"role": "user", "content": "hello"}])
    assert full.status_code == 201 and plain.status_code == 201
    first = owner.client.get(f"/api/v1/jobs/{full.json()['id']}").json()
    second = owner.client.get(f"/api/v1/jobs/{plain.json()['id']}").json()
    assert first == full.json() and second == plain.json()
    assert first["id"] != second["id"] and first["labels"] != second["labels"]
    assert {e["id"] for e in first["ledger_events"]}.isdisjoint(e["id"] for e in second["ledger_events"])
    assert outsider.client.get(f"/api/v1/jobs/{full.json()['id']}").status_code == 404
