"""Runs over the APIs: a job opens a run (`new`, or an id the caller chose) or joins one of its own
application's runs; another application's run is not found; bad run ids, roles and `runs:` sections are a
clear 400."""

from __future__ import annotations

import uuid

import pytest

from audit.models import LedgerEvent
from routing.models import Job, Run
from tests.support.personas import client_with, key_for

pytestmark = pytest.mark.django_db


def opened_events(application) -> list[LedgerEvent]:
    return list(LedgerEvent.objects.filter(event_type="run.opened", subject_application=str(application.pk)))


def test_it_opens_a_run_with_new_and_later_calls_join_it_as_subagents(owner):
    opened = owner.submit(run_id="new")
    assert opened.status_code == 201, opened.json()
    run_id = opened.json()["run_id"]
    assert opened.json()["run_role"] == "planner"
    joined = owner.submit(run_id=run_id)
    assert (joined.json()["run_id"], joined.json()["run_role"]) == (run_id, "subagent")
    named = owner.submit(run_id=run_id, run_role="planner")
    assert named.json()["run_role"] == "planner"
    assert Run.objects.get(pk=run_id).application == owner.application
    [event] = opened_events(owner.application)
    assert event.body["run_id"] == run_id


def test_a_run_id_nobody_uses_opens_a_run_with_that_id(owner):
    run_id = str(uuid.uuid4())
    response = owner.submit(run_id=run_id)
    assert response.status_code == 201 and response.json()["run_id"] == run_id
    assert opened_events(owner.application)[0].body["named_by_caller"] is True


def test_a_job_outside_any_run_says_so(owner):
    job = owner.submit().json()
    assert (job["run_id"], job["run_role"]) == (None, "")


def test_another_application_cannot_join_a_run(owner, outsider):
    run_id = owner.submit(run_id="new").json()["run_id"]
    response = outsider.submit(run_id=run_id)
    assert response.status_code == 404
    assert response.json()["code"] == "run_not_found"
    assert not Job.objects.filter(application=outsider.application).exists()
    assert Job.objects.filter(run_id=run_id).count() == 1


def test_another_application_cannot_join_a_run_over_the_openai_endpoint(owner, outsider):
    run_id = owner.submit(run_id="new").json()["run_id"]
    body = {"model": f"arbiter/{owner.setup.policy.name}", "messages": [{"role": "user", "content": "hello"}]}
    response = outsider.client.post("/v1/chat/completions", body, format="json", HTTP_X_ARBITER_RUN_ID=run_id)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "run_not_found"
    assert not Job.objects.filter(application=outsider.application).exists()


@pytest.mark.parametrize(
    ("fields", "field"),
    [({"run_id": "banana"}, "run_id"), ({"run_id": "new", "run_role": "boss"}, "run_role")],
)
def test_a_bad_run_id_or_role_is_400_naming_the_field(owner, fields, field):
    response = owner.submit(**fields)
    assert response.status_code == 400
    assert [error["field"] for error in response.json()["errors"]] == [field]
    assert not Run.objects.filter(application=owner.application).exists()


def test_a_run_role_without_a_run_is_400_over_the_openai_endpoint(owner):
    body = {"model": f"arbiter/{owner.setup.policy.name}", "messages": [{"role": "user", "content": "hello"}]}
    response = owner.client.post("/v1/chat/completions", body, format="json", HTTP_X_ARBITER_RUN_ROLE="planner")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "x-arbiter-run-id"


def test_a_bad_runs_section_is_400_with_path_and_line(admin):
    source = (
        "rules:\n  - id: default\n    cascade: [mini, flagship]\n"
        "runs:\n  max_flagship_calls: {limit: 2.5, on_limit: nap}\n  max_spend: {limit: 3}\n"
    )
    name = admin.setup.policy.name
    response = admin.client.post(f"/api/v1/admin/policies/{name}/versions", {"source": source}, format="json")
    assert response.status_code == 400
    errors = {error["path"]: (error["line"], error["message"]) for error in response.json()["errors"]}
    assert errors["runs.max_flagship_calls.limit"][0] == 5
    assert errors["runs.max_flagship_calls.limit"][1].endswith("expected an integer, got a number")
    assert errors["runs.max_flagship_calls.on_limit"][0] == 5
    assert "downgrade, hold, refuse" in errors["runs.max_flagship_calls.on_limit"][1]
    assert errors["runs.max_spend"][0] == 6
    assert "unknown property 'max_spend'" in errors["runs.max_spend"][1]


def test_a_rule_on_an_unknown_run_fact_is_400(admin):
    source = (
        "rules:\n  - id: deep\n    when: {run.depth: {gt: 2}}\n    cascade: [mini]\n"
        "  - id: default\n    cascade: [mini]\n"
    )
    name = admin.setup.policy.name
    response = admin.client.post(f"/api/v1/admin/policies/{name}/versions", {"source": source}, format="json")
    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["line"] == 3 and "run.depth" in error["path"]


def test_it_reads_its_run_with_its_calls_and_totals(owner, outsider):
    run_id = owner.submit(run_id="new").json()["run_id"]
    owner.submit(run_id=run_id)
    response = owner.client.get(f"/api/v1/runs/{run_id}")
    assert response.status_code == 200
    run = response.json()
    assert (run["id"], run["closed_at"], run["cost_usd"]) == (run_id, None, "0.00000000")
    assert [(job["run_role"], job["status"], job["limits_reached"]) for job in run["jobs"]] == [
        ("planner", "queued", []),
        ("subagent", "queued", []),
    ]
    assert outsider.client.get(f"/api/v1/runs/{run_id}").status_code == 404
    assert owner.client.get("/api/v1/runs/not-a-uuid").status_code == 404
    assert owner.client.put(f"/api/v1/runs/{run_id}", {}, format="json").status_code == 405


def test_reading_a_run_needs_the_read_scope_and_closing_it_the_write_scope(owner):
    run_id = owner.submit(run_id="new").json()["run_id"]
    writer = client_with(key_for(owner.application, "jobs:write"))
    reader = client_with(key_for(owner.application, "jobs:read"))
    assert writer.get(f"/api/v1/runs/{run_id}").status_code == 403
    assert reader.post(f"/api/v1/runs/{run_id}/close", format="json").status_code == 403


def test_a_closed_run_takes_no_more_calls(owner, outsider):
    run_id = owner.submit(run_id="new").json()["run_id"]
    assert outsider.client.post(f"/api/v1/runs/{run_id}/close", format="json").status_code == 404
    closed = owner.client.post(f"/api/v1/runs/{run_id}/close", format="json")
    assert closed.status_code == 200 and closed.json()["closed_at"]
    again = owner.submit(run_id=run_id)
    assert again.status_code == 409 and again.json()["code"] == "run_closed"
    assert Job.objects.filter(run_id=run_id).count() == 1
    assert owner.client.post(f"/api/v1/runs/{run_id}/close", format="json").status_code == 409
    [event] = LedgerEvent.objects.filter(event_type="run.closed", subject_application=str(owner.application.pk))
    assert event.body == {"run_id": run_id, "calls": 0, "flagship_calls": 0}
