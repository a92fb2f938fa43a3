"""A tier that is down (every deployment failing or behind its breaker), through real workers and the local model
server: the policy's `tier_down` fails the job at once (the default) or waits for the cooldown and tries again."""

from __future__ import annotations

import pytest

from controlplane.roles import Role
from review.services import approval_approve, approval_reject
from routing.execute.breaker import CircuitBreaker
from routing.execute.governance import TIER_DOWN_RULE
from routing.models import Job, JobStatus
from tests.support.factories import UserFactory
from tests.support.governed import governed
from tests.support.workers import events, finished, wait_for

pytestmark = pytest.mark.slow

MINI_ONLY = "rules:\n  - id: mini-only\n    cascade: [mini]\n    confidence: logprob\n"
BREAKERS = {"ARBITER_BREAKER_THRESHOLD": "2", "ARBITER_BREAKER_COOLDOWN_S": "1", "ARBITER_TRIES_PER_DEPLOYMENT": "2"}


def mini_down(model_server, setup) -> list[str]:
    models = [setup.deployments["mini"].model, setup.deployments["mini-eu"].model]
    for model in models:
        model_server.set_faults(model, error_rate=1.0)
    return models


def bodies(job, event_type: str) -> list[dict]:
    return [event.body for event in events(job) if event.event_type == event_type]


def test_by_default_a_job_whose_tier_is_down_fails_at_once_saying_so(model_server, workers):
    setup = governed(model_server.base_url, policy_source=MINI_ONLY)
    models = mini_down(model_server, setup)
    workers.start(**BREAKERS)
    try:
        job = finished(setup.submit("[task:classification] [confidence:mini=0.95] tier down"))
    finally:
        for model in models:
            model_server.reset_faults(model)
    assert (job.status, job.attempt) == (JobStatus.FAILED, 1)
    [failed] = bodies(job, "job.failed")
    assert failed["tier_down"] == {"tier": "mini", "action": "fail"}
    assert bodies(job, "job.waiting") == []


def test_wait_retries_after_the_cooldown_and_completes_once_the_tier_is_back(model_server, workers):
    setup = governed(model_server.base_url, policy_source=MINI_ONLY + "tier_down: {action: wait, wait_up_to: 2m}\n")
    models = mini_down(model_server, setup)
    workers.start(**BREAKERS)
    job = setup.submit("[task:classification] [confidence:mini=0.95] wait for mini")
    try:
        waiting = wait_for(lambda: bodies(job, "job.waiting"), message="the job to wait for its tier")
    finally:
        for model in models:
            model_server.reset_faults(model)
    assert waiting[0]["tier"] == "mini" and waiting[0]["reason"] == "tier_down"
    assert waiting[0]["retry_at"] < waiting[0]["deadline"]
    job = finished(job, timeout=60)
    assert job.status == JobStatus.COMPLETED
    assert job.attempt == len(bodies(job, "job.waiting")) + 1
    assert [event.event_type for event in events(job)][-1] == "job.completed"
    assert len(bodies(job, "model.called")) == 1


def test_wait_also_covers_failures_before_the_breakers_have_counted_enough_to_open(model_server, workers):
    # The first jobs to meet a dead tier fail its deployments before any breaker opens: still a tier that is down.
    setup = governed(model_server.base_url, policy_source=MINI_ONLY + "tier_down: {action: wait, wait_up_to: 2m}\n")
    models = mini_down(model_server, setup)
    workers.start(**(BREAKERS | {"ARBITER_BREAKER_THRESHOLD": "50"}))
    job = setup.submit("[task:classification] [confidence:mini=0.95] before the breakers open")
    try:
        waiting = wait_for(lambda: bodies(job, "job.waiting"), message="the job to wait for its tier")
    finally:
        for model in models:
            model_server.reset_faults(model)
    assert waiting[0]["action"] == "wait"
    names = [setup.deployments["mini"].name, setup.deployments["mini-eu"].name]
    assert all(CircuitBreaker(name).state().state == "closed" for name in names)  # none opened: too few failures
    job = finished(job, timeout=60)
    assert job.status == JobStatus.COMPLETED


def test_wait_gives_up_at_its_deadline_even_past_the_attempt_cap(model_server, workers):
    setup = governed(model_server.base_url, policy_source=MINI_ONLY + "tier_down: {action: wait, wait_up_to: 8s}\n")
    models = mini_down(model_server, setup)
    workers.start(**BREAKERS)
    try:
        job = finished(setup.submit("[task:classification] [confidence:mini=0.95] mini never returns"), timeout=60)
    finally:
        for model in models:
            model_server.reset_faults(model)
    assert job.status == JobStatus.FAILED
    waits = bodies(job, "job.waiting")
    assert len(waits) >= 3  # more attempts than ARBITER_MAX_ATTEMPTS: waiting is not dying
    assert job.attempt == len(waits) + 1
    [failed] = bodies(job, "job.failed")
    assert failed["tier_down"] == {"tier": "mini", "action": "wait"}
    assert "gave up" not in job.status_reason


def test_hold_waits_for_a_person_whose_approval_tries_the_tier_again(model_server, workers):
    setup = governed(model_server.base_url, policy_source=MINI_ONLY + "tier_down: {action: hold, wait_up_to: 1h}\n")
    models = mini_down(model_server, setup)
    workers.start(**BREAKERS)
    try:
        job = finished(setup.submit("[task:classification] [confidence:mini=0.95] hold for a person"))
    finally:
        for model in models:
            model_server.reset_faults(model)
    assert job.status == JobStatus.AWAITING_APPROVAL and "tier mini is down" in job.status_reason
    request = job.approval_requests.get()
    assert (request.rule_ids, request.on_expiry) == ([TIER_DOWN_RULE], "reject")
    assert bodies(job, "job.waiting")[0]["action"] == "hold"
    assert bodies(job, "approval.requested")[0]["tier"] == "mini"

    # A person approves once mini is back: its breakers have let their cooldown pass.
    names = [setup.deployments["mini"].name, setup.deployments["mini-eu"].name]
    wait_for(lambda: all(CircuitBreaker(name).state().state != "open" for name in names), message="the cooldown")
    approval_approve(job=job, user=UserFactory(roles=[Role.REVIEWER]), reason="mini is back")
    job = wait_for(
        lambda: (fresh := Job.objects.get(pk=job.pk)).status == JobStatus.COMPLETED and fresh,
        timeout=60,
        message="the approved job to run again and complete",
    )
    assert job.attempt == 2 and job.result["tier"] == "mini"
    assert [body["reason"] for body in bodies(job, "job.requeued")] == [TIER_DOWN_RULE]
    assert [event.event_type for event in events(job)][-1] == "job.completed"


def test_a_rejected_hold_ends_the_job(model_server, workers):
    setup = governed(model_server.base_url, policy_source=MINI_ONLY + "tier_down: {action: hold}\n")
    models = mini_down(model_server, setup)
    workers.start(**BREAKERS)
    try:
        job = finished(setup.submit("[task:classification] [confidence:mini=0.95] held, then rejected"))
    finally:
        for model in models:
            model_server.reset_faults(model)
    approval_reject(job=job, user=UserFactory(roles=[Role.REVIEWER]), reason="not worth retrying")
    job.refresh_from_db()
    assert job.status == JobStatus.REJECTED
    assert job.attempt == 1
