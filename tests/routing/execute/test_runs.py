"""Agent runs under the policy's `runs:` limits, run as a worker runs a job (claim, route, call, govern)
against the local model server and real Postgres: past its flagship-call limit a run's next flagship call is
downgraded; past its cost cap its answer is held for a person; past its call limit it is refused; and two
calls racing at a limit never both pass it."""

from __future__ import annotations

import threading
import uuid

import pytest
from django.db import connection

from audit.models import LedgerEvent
from controlplane.roles import Role
from review.services import approval_approve
from routing.execute import facts
from routing.execute.run import job_run
from routing.models import Job, JobStatus, Run
from tests.support.factories import UserFactory
from tests.support.governed import governed
from tests.support.personas import client_with, key_for
from tests.support.workers import events

pytestmark = pytest.mark.slow

RULES = """
rules:
  - id: planner
    when: {run.role: planner}
    cascade: [flagship]
    confidence: logprob
  - id: default
    cascade: [mini, flagship]
    escalate_below: {mini: 0.75}
    confidence: logprob
"""
SURE = "[task:general] [confidence:nano=0.95,mini=0.95,flagship=0.95]"


@pytest.fixture(autouse=True)
def _this_tests_catalog():
    # The catalog is cached per process for two seconds: a job must be routed to this test's deployments.
    facts.catalog_forget()


def run_here(job: Job) -> Job:
    """Run a queued job in this process, as a worker would."""
    job_run(job_id=str(job.pk), worker=f"runs-test:{uuid.uuid4().hex[:6]}")
    return Job.objects.get(pk=job.pk)


def limit_events(job: Job) -> list[dict]:
    return [event.body for event in events(job) if event.event_type == "run.limit_reached"]


def test_the_fourth_flagship_call_of_a_run_limited_to_three_is_downgraded(model_server, live_db):
    setup = governed(
        model_server.base_url, policy_source=RULES + "runs:\n  max_flagship_calls: {limit: 3, on_limit: downgrade}\n"
    )
    first = setup.submit(f"{SURE} plan step 1", task_type="general", run_id="new", run_role="planner")
    jobs = [run_here(first)]
    for step in (2, 3, 4):
        job = setup.submit(
            f"{SURE} plan step {step}", task_type="general", run_id=str(first.run_id), run_role="planner"
        )
        jobs.append(run_here(job))
    assert [job.status for job in jobs] == [JobStatus.COMPLETED] * 4
    assert [job.final_tier for job in jobs] == ["flagship", "flagship", "flagship", "mini"]
    assert [job.route["plan"]["downgraded"] for job in jobs] == [False, False, False, True]
    assert [limit_events(job) for job in jobs[:3]] == [[], [], []]
    [reached] = limit_events(jobs[3])
    assert (reached["limit"], reached["value"], reached["observed"], reached["action"]) == (
        "max_flagship_calls",
        3,
        3,
        "downgrade",
    )
    assert reached["run_id"] == str(first.run_id)
    run = Run.objects.get(pk=first.run_id)
    assert (run.calls, run.flagship_calls) == (4, 3)
    # The application sees the run as a whole: tiers, costs and the limit its fourth call met.
    read = client_with(key_for(setup.application, "jobs:read")).get(f"/api/v1/runs/{run.pk}").json()
    assert (read["calls"], read["flagship_calls"]) == (4, 3)
    assert [job["final_tier"] for job in read["jobs"]] == ["flagship", "flagship", "flagship", "mini"]
    assert [len(job["limits_reached"]) for job in read["jobs"]] == [0, 0, 0, 1]
    assert float(read["cost_usd"]) == float(sum(job.total_cost_usd for job in jobs)) > 0


def test_a_subagent_call_its_cheap_tier_answered_gives_back_its_flagship_reservation(model_server, live_db):
    # The subagents' cascade can reach the flagship ([mini, flagship]) but mini answers them: they are not
    # flagship calls. The planner's fourth flagship call is the one the limit downgrades.
    setup = governed(
        model_server.base_url, policy_source=RULES + "runs:\n  max_flagship_calls: {limit: 3, on_limit: downgrade}\n"
    )
    first = run_here(setup.submit(f"{SURE} plan 1", task_type="general", run_id="new", run_role="planner"))
    run_id = str(first.run_id)
    jobs = [first]
    for role in ("subagent", "planner", "subagent", "planner", "subagent", "planner"):
        jobs.append(run_here(setup.submit(f"{SURE} {role}", task_type="general", run_id=run_id, run_role=role)))
    planners = [job for job in jobs if job.run_role == "planner"]
    subagents = [job for job in jobs if job.run_role == "subagent"]
    assert [job.final_tier for job in subagents] == ["mini", "mini", "mini"]
    assert [job.final_tier for job in planners] == ["flagship", "flagship", "flagship", "mini"]
    # From the third planner call on, every call that could reach the flagship is kept off it.
    assert [bool(limit_events(job)) for job in jobs] == [False] * 5 + [True, True]
    assert Run.objects.get(pk=run_id).flagship_calls == 3


def test_a_call_outside_any_run_never_matches_a_rule_on_run_facts(model_server, live_db):
    setup = governed(model_server.base_url, policy_source=RULES)
    job = run_here(setup.submit(f"{SURE} no run", task_type="general"))
    assert job.route["plan"]["rule_id"] == "default" and job.final_tier == "mini"


def test_a_run_over_its_cost_cap_has_its_next_answer_held_until_a_person_approves(model_server, live_db):
    setup = governed(model_server.base_url, policy_source=RULES + "runs:\n  max_cost_usd: {limit: 0.000001}\n")
    first = run_here(setup.submit(f"{SURE} subagent 1", task_type="general", run_id="new", run_role="subagent"))
    assert first.status == JobStatus.COMPLETED and first.total_cost_usd > 0
    second = run_here(setup.submit(f"{SURE} subagent 2", task_type="general", run_id=str(first.run_id)))
    assert second.run_role == "subagent"
    assert second.status == JobStatus.AWAITING_APPROVAL
    request = second.approval_requests.get()
    assert request.rule_ids == ["run_limit:max_cost_usd"]
    assert "max_cost_usd" in request.reasons[0]
    [reached] = limit_events(second)
    assert reached["action"] == "hold" and reached["limit"] == "max_cost_usd"
    # The application cannot read the held answer before the decision; after it, it can.
    client = client_with(key_for(setup.application, "jobs:read"))
    assert client.get(f"/api/v1/jobs/{second.pk}").json()["result"] is None
    approval_approve(job=second, user=UserFactory(roles=[Role.REVIEWER]), reason="within the quarter's spend")
    assert Job.objects.get(pk=second.pk).status == JobStatus.COMPLETED
    assert client.get(f"/api/v1/jobs/{second.pk}").json()["result"] is not None


def test_a_run_past_its_call_limit_is_refused_before_any_model_call(model_server, live_db):
    setup = governed(model_server.base_url, policy_source=RULES + "runs:\n  max_calls: {limit: 1, on_limit: refuse}\n")
    first = run_here(setup.submit(f"{SURE} one", task_type="general", run_id="new"))
    second = run_here(setup.submit(f"{SURE} two", task_type="general", run_id=str(first.run_id)))
    assert (first.status, second.status) == (JobStatus.COMPLETED, JobStatus.REJECTED)
    assert "max_calls" in second.status_reason
    assert second.steps.count() == 0
    assert "model.called" not in [event.event_type for event in events(second)]


def test_two_flagship_calls_racing_at_the_limit_do_not_both_pass(model_server, live_db):
    setup = governed(
        model_server.base_url, policy_source=RULES + "runs:\n  max_flagship_calls: {limit: 1, on_limit: refuse}\n"
    )
    run_id = str(uuid.uuid4())  # a run the caller names before its first call
    jobs = [setup.submit(f"{SURE} racer {n}", task_type="general", run_id=run_id, run_role="planner") for n in (1, 2)]
    start = threading.Barrier(2)

    def race(job: Job) -> None:
        try:
            start.wait(timeout=30)
            job_run(job_id=str(job.pk), worker=f"runs-race:{uuid.uuid4().hex[:6]}")
        finally:
            connection.close()

    threads = [threading.Thread(target=race, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    statuses = sorted(Job.objects.get(pk=job.pk).status for job in jobs)
    assert statuses == [JobStatus.COMPLETED, JobStatus.REJECTED]
    run = Run.objects.get(pk=run_id)
    assert (run.calls, run.flagship_calls) == (2, 1)


def test_a_chat_completion_opens_a_run_and_is_told_its_id(model_server, live_db):
    setup = governed(model_server.base_url, policy_source=RULES)
    client = client_with(key_for(setup.application, "jobs:read", "jobs:write"))
    body = {"model": f"arbiter/{setup.policy.name}", "messages": [{"role": "user", "content": f"{SURE} plan"}]}
    opened = client.post("/v1/chat/completions", body, format="json", HTTP_X_ARBITER_RUN_ID="new")
    assert opened.status_code == 200, opened.content
    run_id = opened["x-arbiter-run-id"]
    assert opened["x-arbiter-final-tier"] == "flagship"  # the call that opens a run is its planner
    joined = client.post(
        "/v1/chat/completions", body, format="json", HTTP_X_ARBITER_RUN_ID=run_id, HTTP_IDEMPOTENCY_KEY="sub-1"
    )
    assert joined.status_code == 200 and joined["x-arbiter-run-id"] == run_id
    assert joined["x-arbiter-final-tier"] == "mini"  # a later call is a subagent
    assert [job.run_role for job in Job.objects.filter(run_id=run_id).order_by("created_at")] == [
        "planner",
        "subagent",
    ]


def test_a_responses_api_call_joins_the_run_its_header_names(model_server, live_db):
    setup = governed(model_server.base_url, policy_source=RULES)
    client = client_with(key_for(setup.application, "jobs:read", "jobs:write"))
    run_id = str(uuid.uuid4())
    body = {"model": f"arbiter/{setup.policy.name}", "input": f"{SURE} a subagent step"}
    response = client.post(
        "/v1/responses", body, format="json", HTTP_X_ARBITER_RUN_ID=run_id, HTTP_X_ARBITER_RUN_ROLE="subagent"
    )
    assert response.status_code == 200, response.content
    assert response["x-arbiter-run-id"] == run_id
    [job] = Job.objects.filter(run_id=run_id)
    assert (job.run_role, job.final_tier) == ("subagent", "mini")


def test_a_later_attempt_keeps_its_first_admission_and_is_not_counted_again(model_server, live_db, settings):
    # Attempt 1 finds its tier down and goes back to the queue (tier_down: wait); attempt 2 answers.
    settings.ARBITER_TRIES_PER_DEPLOYMENT = 1
    mini_only = "rules:\n  - id: mini-only\n    cascade: [mini]\n    confidence: logprob\n"
    setup = governed(
        model_server.base_url,
        policy_source=mini_only + "tier_down: {action: wait, wait_up_to: 10m}\nruns:\n  max_cost_usd: {limit: 0}\n",
    )
    models = [setup.deployments["mini"].model, setup.deployments["mini-eu"].model]
    job = setup.submit(f"{SURE} twice", task_type="general", run_id="new")
    for model in models:
        model_server.set_faults(model, error_rate=1.0)
    try:
        first = run_here(job)
    finally:
        for model in models:
            model_server.reset_faults(model)
    assert (first.status, first.attempt) == (JobStatus.QUEUED, 1)
    second = run_here(first)
    assert (second.status, second.attempt) == (JobStatus.AWAITING_APPROVAL, 2)
    assert second.approval_requests.get().rule_ids == ["run_limit:max_cost_usd"]
    assert len(limit_events(second)) == 1
    run = Run.objects.get(pk=job.run_id)
    assert run.calls == 1


def test_two_calls_opening_the_same_fresh_run_id_at_once_share_one_run(model_server, live_db):
    setup = governed(model_server.base_url, policy_source=RULES)
    run_id = str(uuid.uuid4())
    start = threading.Barrier(2)
    made: list[Job] = []

    def open_it(n: int) -> None:
        try:
            start.wait(timeout=30)
            made.append(setup.submit(f"{SURE} opener {n}", task_type="general", run_id=run_id))
        finally:
            connection.close()

    threads = [threading.Thread(target=open_it, args=(n,)) for n in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(made) == 2 and {job.run_id for job in made} == {uuid.UUID(run_id)}
    assert sorted(job.run_role for job in made) == ["planner", "subagent"]
    opened = LedgerEvent.objects.filter(event_type="run.opened", subject_application=str(setup.application.pk))
    assert [event.body["run_id"] for event in opened] == [run_id]
