"""Issue 12, items 5 and 6: a key acts for the person who minted it. What it submits is that person's
job (so they cannot approve it), what it writes is authored by that person, and it stops with them."""

from __future__ import annotations

import pytest

from audit.models import LedgerEvent
from controlplane.roles import Role
from review.services import ReviewError, approval_approve
from routing.models import ApiKey, Job, JobStatus, PolicyVersion
from tests.support.factories import UserFactory
from tests.support.governed import POLICY, governed
from tests.support.personas import client_with, key_for
from tests.support.workers import finished

UNSURE = "[task:classification] [confidence:nano=0.2,mini=0.3,flagship=0.4] unsure"


@pytest.mark.slow
def test_a_reviewer_cannot_approve_a_job_submitted_with_their_own_key(model_server, workers):
    reviewer, colleague = UserFactory(roles=[Role.REVIEWER]), UserFactory(roles=[Role.REVIEWER])
    setup = governed(model_server.base_url)
    client = client_with(key_for(setup.application, "jobs:write", "jobs:read", owner=reviewer))
    workers.start()

    response = client.post(
        "/api/v1/jobs",
        {"task_type": "classification", "messages": [{"role": "user", "content": UNSURE}], "policy": setup.policy.name},
        format="json",
    )
    assert response.status_code == 201, response.json()
    job = finished(Job.objects.get(pk=response.json()["id"]))
    assert job.status == JobStatus.AWAITING_APPROVAL
    assert job.submitted_by == reviewer

    with pytest.raises(ReviewError, match="you submitted this job; someone else must decide"):
        approval_approve(job=job, user=reviewer)
    assert Job.objects.get(pk=job.pk).status == JobStatus.AWAITING_APPROVAL
    assert approval_approve(job=job, user=colleague).status == JobStatus.COMPLETED


@pytest.mark.slow
def test_a_job_asked_through_the_openai_endpoint_is_the_key_owners_too(model_server, workers):
    reviewer = UserFactory(roles=[Role.REVIEWER])
    setup = governed(model_server.base_url)
    client = client_with(key_for(setup.application, "jobs:write", "jobs:read", owner=reviewer))
    workers.start()

    response = client.post(
        "/v1/chat/completions",
        {"model": f"arbiter/{setup.policy.name}", "messages": [{"role": "user", "content": UNSURE}]},
        format="json",
        HTTP_X_ARBITER_TASK_TYPE="classification",
    )
    assert response.status_code == 409, response.json()
    job = Job.objects.get(pk=response.json()["error"]["job_id"])
    assert job.submitted_by == reviewer
    with pytest.raises(ReviewError, match="you submitted this job"):
        approval_approve(job=job, user=reviewer)


@pytest.mark.django_db
def test_a_version_created_over_the_api_is_authored_by_the_keys_owner(governed_setup):
    person = UserFactory(roles=[Role.POLICY_ADMIN])
    raw = key_for(governed_setup.application, "platform:admin", owner=person)
    prefix = ApiKey.objects.get(created_by=person).prefix
    name = governed_setup.policy.name

    created = client_with(raw).post(
        f"/api/v1/admin/policies/{name}/versions", {"source": POLICY, "comment": "over the API"}, format="json"
    )
    assert created.status_code == 201, created.json()
    assert created.json()["author"] == person.username
    version = PolicyVersion.objects.get(policy=governed_setup.policy, number=created.json()["number"])
    assert version.author == person
    event = LedgerEvent.objects.filter(event_type="policy_version.created").order_by("-id").first()
    assert (event.actor_kind, event.actor_id) == ("user", str(person.pk))
    assert event.body["via_key"] == prefix


@pytest.mark.django_db
def test_a_key_stops_working_when_its_owner_is_deactivated(owner):
    person = ApiKey.objects.get(application=owner.application).created_by
    assert owner.client.get("/api/v1/jobs").status_code == 200
    person.is_active = False
    person.save(update_fields=["is_active"])
    response = owner.client.get("/api/v1/jobs")
    assert response.status_code == 401
    assert "deactivated" in response.json()["detail"]


@pytest.mark.django_db
def test_an_owner_who_loses_the_policy_admin_role_loses_the_keys_admin_powers(governed_setup):
    person = UserFactory(roles=[Role.POLICY_ADMIN])
    client = client_with(key_for(governed_setup.application, "platform:admin", owner=person))
    assert client.get("/api/v1/admin/policies").status_code == 200
    person.groups.clear()
    response = client.get("/api/v1/admin/policies")
    assert response.status_code == 403
    assert response.json()["code"] == "owner_lacks_role"
    assert "no longer holds the policy-admin role" in response.json()["detail"]


@pytest.mark.django_db
def test_a_legacy_key_without_an_owner_reads_jobs_but_administers_nothing(governed_setup):
    raw = key_for(governed_setup.application, "jobs:read", "app:admin")
    ApiKey.objects.filter(application=governed_setup.application).update(created_by=None)  # minted before 0007
    client = client_with(raw)
    assert client.get("/api/v1/jobs").status_code == 200
    response = client.get(f"/api/v1/admin/applications/{governed_setup.application.slug}/keys")
    assert response.status_code == 403
    assert response.json()["code"] == "key_without_owner"
    assert "may read jobs but not administer anything" in response.json()["detail"]


@pytest.mark.django_db
def test_a_legacy_key_without_an_owner_cannot_submit_a_job_nobody_would_be_kept_from_approving(governed_setup):
    raw = key_for(governed_setup.application, "jobs:write", "jobs:read")
    ApiKey.objects.filter(application=governed_setup.application).update(created_by=None)  # minted before 0007
    client = client_with(raw)
    body = {"task_type": "classification", "messages": [{"role": "user", "content": "hi"}]}
    response = client.post("/api/v1/jobs", {**body, "policy": governed_setup.policy.name}, format="json")
    assert response.status_code == 403, response.json()
    assert response.json()["code"] == "key_without_owner"
    assert "minted before keys acted for a person" in response.json()["detail"]
    assert "Mint a new key" in response.json()["detail"]
    assert not Job.objects.filter(application=governed_setup.application).exists()
    assert client.get("/api/v1/jobs").status_code == 200  # what it already submitted stays readable


@pytest.mark.django_db
def test_a_legacy_key_without_an_owner_gets_nothing_from_the_openai_endpoints(governed_setup):
    raw = key_for(governed_setup.application, "jobs:write")
    ApiKey.objects.filter(application=governed_setup.application).update(created_by=None)  # minted before 0007
    client = client_with(raw)
    completion = client.post(
        "/v1/chat/completions", {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}, format="json"
    )
    models = client.get("/v1/models")
    for response in (completion, models):
        assert response.status_code == 403, response.json()
        assert response.json()["error"]["code"] == "key_without_owner"
        assert "mint" in response.json()["error"]["message"].lower()
    assert not Job.objects.filter(application=governed_setup.application).exists()
