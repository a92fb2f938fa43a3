"""The life of a job through a real worker, a real broker, real Postgres and the local model server."""

from __future__ import annotations

import hashlib

import pytest

from routing.models import JobStatus
from tests.support.governed import REFUND_TOOL, governed
from tests.support.workers import event_types, events, finished

pytestmark = pytest.mark.slow


def test_it_accepts_a_confident_classification_at_nano(model_server, workers):
    setup = governed(model_server.base_url)
    workers.start()
    job = finished(setup.submit("[task:classification] [confidence:nano=0.95,mini=0.9,flagship=0.9] Billing?"))
    assert job.status == JobStatus.COMPLETED
    assert job.final_tier == "nano"
    assert job.final_confidence == pytest.approx(0.95, abs=1e-6)
    assert [step.tier for step in job.steps.all()] == ["nano"]
    assert event_types(job) == [
        "job.submitted",
        "route.decided",
        "model.called",
        "confidence.scored",
        "job.completed",
    ]
    route = next(event for event in events(job) if event.event_type == "route.decided")
    assert route.body["rule_id"] == "cheap-first"
    assert route.body["policy_version_sha256"] == job.policy_version.sha256


def test_it_escalates_nano_to_mini_to_flagship_with_each_hop_in_the_ledger(model_server, workers):
    setup = governed(model_server.base_url)
    workers.start()
    job = finished(setup.submit("[task:classification] [confidence:nano=0.5,mini=0.6,flagship=0.9] Which queue?"))
    assert job.status == JobStatus.COMPLETED
    assert job.final_tier == "flagship"
    assert job.escalations == 2
    steps = list(job.steps.order_by("index"))
    assert [(s.tier, s.outcome) for s in steps] == [
        ("nano", "escalated"),
        ("mini", "escalated"),
        ("flagship", "accepted"),
    ]
    scored = [event.body for event in events(job) if event.event_type == "confidence.scored"]
    assert [(b["tier"], round(b["score"], 6), b["threshold"], b["met"]) for b in scored] == [
        ("nano", 0.5, 0.8, False),
        ("mini", 0.6, 0.7, False),
        ("flagship", 0.9, None, True),
    ]
    escalated = [event.body for event in events(job) if event.event_type == "job.escalated"]
    assert [b["from_tier"] for b in escalated] == ["nano", "mini"]
    assert job.total_cost_usd == sum(step.cost_usd for step in steps)


def test_a_score_equal_to_the_threshold_is_accepted(model_server, workers):
    setup = governed(model_server.base_url)
    workers.start()
    job = finished(setup.submit("[task:classification] [confidence:nano=0.8,mini=0.9,flagship=0.9] Equal?"))
    assert job.final_tier == "nano"


def test_it_holds_a_job_still_unsure_after_the_flagship(model_server, workers):
    setup = governed(model_server.base_url)
    workers.start()
    job = finished(setup.submit("[task:classification] [confidence:nano=0.2,mini=0.3,flagship=0.4] Unsure"))
    assert job.status == JobStatus.AWAITING_APPROVAL
    request = job.approval_requests.get()
    assert request.rule_ids == ["unsure-after-flagship"]
    assert "approval.requested" in event_types(job)


def test_a_tool_call_matching_an_approval_rule_holds_the_job(model_server, workers):
    setup = governed(model_server.base_url)
    workers.start()
    job = finished(
        setup.submit(
            '[task:general] [confidence:mini=0.9,flagship=0.9] [call:issue_refund {"amount": 150}] refund please',
            task_type="general",
            tools=REFUND_TOOL,
        )
    )
    assert job.status == JobStatus.AWAITING_APPROVAL
    request = job.approval_requests.get()
    assert request.rule_ids == ["refunds-over-100"]
    assert request.required_approvers == 2


def test_a_tool_call_outside_the_jobs_tools_is_blocked_and_recorded(model_server, workers):
    setup = governed(model_server.base_url)
    workers.start()
    job = finished(
        setup.submit(
            "[task:general] [confidence:mini=0.9,flagship=0.9] [call:delete_everything {}] tidy up",
            task_type="general",
            tools=REFUND_TOOL,
        )
    )
    assert job.status == JobStatus.BLOCKED
    # The name is the model's own (it may carry anything a prompt injected): named by digest only.
    digest = hashlib.sha256(b"delete_everything").hexdigest()
    assert job.status_reason == (
        f"tool call #0 <not offered> (sha256 {digest[:16]}) is not among the job's allowed tools ([issue_refund])"
    )
    blocked = [event.body for event in events(job) if event.event_type == "tool_call.blocked"]
    assert [(b["tool"], b["tool_sha256"]) for b in blocked[0]["blocked"]] == [("<not offered>", digest)]


def test_an_eu_labelled_job_only_touches_eu_deployments(model_server, workers):
    setup = governed(model_server.base_url)
    workers.start()
    job = finished(
        setup.submit(
            "[task:general] [confidence:mini=0.3,flagship=0.9] EU customer data",
            task_type="general",
            labels={"region": "eu"},
        )
    )
    assert job.status == JobStatus.COMPLETED
    regions = {step.deployment.region for step in job.steps.all()}
    assert regions == {"eu"}
    assert job.steps.count() == 2
