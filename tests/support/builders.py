"""Rows for view tests: a catalog and an active policy, held jobs as the pipeline leaves them, and a
history of past jobs a draft can be replayed over.

The view tests run in a rolled-back transaction and build the rows a worker would have written
(job, steps, approval request) directly, so that each test says exactly what the reviewer sees.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from audit import ledger
from audit.ledger import Actor
from routing.models import Application, ApprovalRequest, Job, JobStatus, PolicyVersion, Step
from routing.services.policies import (
    policy_create,
    policy_version_activate,
    policy_version_create,
    policy_version_submit,
)
from tests.support.evaluations import DRAFT_POLICY, HAND_POLICY, make_job
from tests.support.factories import ApplicationFactory, DeploymentFactory, UserFactory, unique
from tests.support.governed import POLICY


def catalog() -> dict:
    deployments = {tier: DeploymentFactory(tier=tier, name=unique(tier)) for tier in ("nano", "mini", "flagship")}
    for tier in ("mini", "flagship"):
        deployments[f"{tier}-eu"] = DeploymentFactory(tier=tier, region="eu", name=unique(f"{tier}-eu"))
    return deployments


def active_policy(*, source: str = POLICY, author=None) -> PolicyVersion:
    """A policy with one active version (written by `author`, activated by someone else)."""
    catalog()
    policy = policy_create(name=unique("policy"), actor=Actor.system("test"))
    author = author or UserFactory()
    version = policy_version_create(policy=policy, source=source, author=author, comment="first")
    policy_version_submit(version=version, user=author)
    return policy_version_activate(version=version, user=UserFactory())


def held_job(
    *,
    version: PolicyVersion,
    application=None,
    rule: str = "unsure-after-flagship",
    required: int = 1,
    content: str = "label: billing",
    tool_calls: list | None = None,
    confidence: float = 0.42,
    tier: str = "flagship",
    task_type: str = "classification",
    age: timedelta = timedelta(minutes=5),
    submitted_by=None,
) -> Job:
    """A job held for approval after nano was unsure and `tier` answered, with its ledger events."""
    application = application or ApplicationFactory()
    output = {"content": content, "tool_calls": tool_calls or [], "finish_reason": "stop"}
    first = {"content": "label: bug", "tool_calls": [], "finish_reason": "stop"}
    job = Job.objects.create(
        application=application,
        task_type=task_type,
        request={"messages": [{"role": "user", "content": "Which queue does this ticket go to?"}]},
        policy_version=version,
        status=JobStatus.AWAITING_APPROVAL,
        status_reason="final_confidence is low",
        version=1,
        attempt=1,
        submitted_by=submitted_by,
        final_tier=tier,
        final_confidence=confidence,
        total_cost_usd=Decimal("0.00012"),
        total_tokens=58,
        escalations=1,
        result={"output": output, "step_index": 1, "tier": tier},
        route={
            "plan": {"rule_id": "cheap-first", "steps": [
                {"tier": "nano", "deployments": ["nano-a"], "escalate_below": 0.8, "confidence_method": "logprob"},
                {"tier": tier, "deployments": [f"{tier}-a"], "escalate_below": None, "confidence_method": "logprob"},
            ]},
            "error": None,
            "explanation": {
                "matched_rule": "cheap-first",
                "rules_checked": [{"rule": "cheap-first", "matched": True, "reason": "task_type is 'classification'"}],
                "tiers_removed": [{"tier": "mini", "reason": "max_tier is nano"}],
                "deployments_skipped": [{"deployment": "nano-b", "tier": "nano", "reasons": ["disabled"]}],
                "notes": [],
            },
            "complexity": {"score": 0.12, "method": "heuristic"},
        },
    )
    Job.objects.filter(pk=job.pk).update(created_at=timezone.now() - age)
    Step.objects.create(job=job, attempt=1, index=0, tier="nano", outcome="escalated", output=first,
                        confidence=0.31, threshold=0.8, prompt_tokens=20, completion_tokens=4,
                        cost_usd=Decimal("0.00001"), latency_ms=12, confidence_method="logprob")
    Step.objects.create(job=job, attempt=1, index=1, tier=tier, outcome="accepted", output=output,
                        confidence=confidence, threshold=None, prompt_tokens=20, completion_tokens=14,
                        cost_usd=Decimal("0.00011"), latency_ms=40, confidence_method="logprob")
    request = ApprovalRequest.objects.create(
        job=job, rule_ids=[rule], reasons=[f"{rule} matched"], required_approvers=required,
        expires_at=timezone.now() + timedelta(hours=4),
    )
    ApprovalRequest.objects.filter(pk=request.pk).update(created_at=timezone.now() - age)
    subject = {"job": job.pk, "application": application.pk}
    ledger.append("job.submitted", actor=Actor.application(application.pk), subject=subject, body={})
    ledger.append("job.escalated", actor=Actor.worker("test"), subject=subject,
                  body={"from_tier": "nano", "score": 0.31, "threshold": 0.8, "cost_so_far_usd": "0.00001"})
    ledger.append("approval.requested", actor=Actor.worker("test"), subject={**subject, "approval": request.pk},
                  body={"rules": [rule]})
    return job


def replayable_history(*, author=None) -> tuple[PolicyVersion, Application, dict[str, Job]]:
    """A live version, a draft with a lower nano threshold and a stricter mini, and four past jobs of one
    application whose recorded steps say what the draft would do: one moves from mini to nano, one cannot
    be known (the draft would call a tier the job never called), one held for approval under both; two
    answers are labelled (a review approved one, a shadow call disagreed with another)."""
    catalog()
    policy = policy_create(name=unique("policy"), actor=Actor.system("test"))
    original = policy_version_create(policy=policy, source=HAND_POLICY, author=author, comment="live")
    draft = policy_version_create(policy=policy, source=DRAFT_POLICY, author=author, comment="lower nano",
                                  parent=original)
    application = ApplicationFactory()
    jobs = {
        "kept": make_job(application, original, "classification", [("nano", 0.85, "logprob", True, "A", 0.001)]),
        "cheaper": make_job(application, original, "classification",
                            [("nano", 0.6, "logprob", False, "A", 0.001), ("mini", 0.95, "logprob", True, "B", 0.004)]),
        "never-called": make_job(application, original, "coding", [("mini", 0.8, "logprob", True, "C", 0.004)]),
        "approved": make_job(
            application,
            original,
            "coding",
            [("mini", 0.6, "logprob", False, "D", 0.004), ("flagship", 0.45, "logprob", True, "E", 0.02)],
            held=["unsure"],
        ),
    }
    for job in jobs.values():  # the rule each job was routed by, as a worker records it
        job.route["plan"]["rule_id"] = "small-tasks" if job.task_type == "classification" else "rest"
        Job.objects.filter(pk=job.pk).update(route=job.route)
    # Labels, as live history leaves them: a reviewer approved the held answer (right); a shadow call to
    # mini disagreed with the kept nano answer (wrong).
    ApprovalRequest.objects.filter(job=jobs["approved"]).update(status="approved")
    kept_step = jobs["kept"].steps.get()
    with transaction.atomic():
        ledger.append("shadow.compared", actor=Actor.worker("test"),
                      subject={"job": jobs["kept"].pk, "step": kept_step.pk, "application": application.pk},
                      body={"agreement": 0.0, "shadow_tier": "mini", "shadow_cost_usd": "0.004"})
    return draft, application, jobs
