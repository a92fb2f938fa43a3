"""The life of a job inside a worker: claim, route, call, score, escalate, govern, finish.

Each state change is its own short transaction that writes its ledger event and is fenced by the
attempt number (routing.pipeline.fencing); provider calls happen outside any transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.utils import timezone

from audit import ledger, payloads
from routing import metrics
from routing.calls import CallResult, TierUnavailable, call_tier
from routing.models import Job, JobStatus, ModelDeployment, Step, StepOutcome
from routing.pipeline import facts
from routing.pipeline.fencing import Claim, StaleAttempt, fenced, job_claim
from routing.pipeline.governance import job_govern
from routing.pipeline.scoring import score_step

logger = logging.getLogger(__name__)


@dataclass
class StepRecord:
    """What one accepted-or-escalated step produced, as governance and the result need it."""

    index: int
    tier: str
    output: dict[str, Any]
    confidence: float | None
    cost_usd: Decimal


def job_run(*, job_id: str, worker: str) -> bool:
    """Run the job if this worker can claim it. False when it could not (another holds it, or it is done)."""
    claim = job_claim(job_id=job_id, worker=worker)
    if claim is None:
        return False
    try:
        _run_claimed(claim)
    except StaleAttempt:
        logger.info("job %s attempt %s superseded; stopping", claim.job_id, claim.attempt)
    return True


def _run_claimed(claim: Claim) -> None:
    job = Job.objects.select_related("policy_version", "application").get(pk=claim.job_id)
    document = facts.document_for(job.policy_version)
    catalog = facts.catalog_snapshot()
    route = facts.route_job(job, document, catalog)
    with fenced(claim) as locked:
        locked.route = route.record
        locked.complexity = route.complexity
        locked.save(update_fields=["route", "complexity", "lease_expires_at"])
        ledger.append(
            "route.decided",
            actor=claim.actor,
            subject=_subject(job),
            body={
                **route.record,
                "rule_id": route.plan.rule_id if route.plan else None,
                "attempt": claim.attempt,
                "policy_version_sha256": job.policy_version.sha256,
            },
        )
        if route.budget.over_soft and not route.budget.over_hard:
            ledger.append(
                "budget.soft_limit_reached",
                actor=claim.actor,
                subject=_subject(job),
                body=route.budget.to_record(),
            )
        if route.plan is None:
            rejected = route.budget.over_hard and document.budgets.on_hard_limit == "reject"
            _finish(
                locked,
                claim,
                JobStatus.REJECTED if rejected else JobStatus.FAILED,
                reason=route.error or "no route",
            )
            return

    deployments = {deployment.name: deployment for deployment in catalog.deployments}
    accepted: StepRecord | None = None
    records: list[StepRecord] = []
    total_cost = Decimal(0)
    for index, plan_step in enumerate(route.plan.steps):
        last = index == len(route.plan.steps) - 1
        candidates = [deployments[name] for name in plan_step.deployments if name in deployments]
        request = facts.provider_request(job, plan_step, route.plan, candidates)
        try:
            call = call_tier(plan_step.tier, candidates, request)
        except TierUnavailable as unavailable:
            _record_unavailable(claim, job, index, plan_step, unavailable)
            if last:
                with fenced(claim) as locked:
                    _finish(locked, claim, JobStatus.FAILED, reason=str(unavailable))
                return
            continue
        score, scoring_calls = score_step(
            job=job,
            plan=route.plan,
            step=plan_step,
            call=call,
            request=request,
            deployments=deployments,
            schema=facts.output_schema(job, route.plan),
        )
        is_accepted = last or plan_step.accepts(score.score)
        cost_cap = facts.cost_cap(job)
        step_cost = _cost(call) + sum((_cost(extra) for extra in scoring_calls), Decimal(0))
        total_cost += step_cost
        if not is_accepted and cost_cap is not None and total_cost >= cost_cap:
            is_accepted = True  # the job's cost cap ends the cascade here; governance sees the cost
        record = _record_step(claim, job, index, plan_step, call, score, is_accepted, step_cost, total_cost)
        records.append(record)
        if is_accepted:
            accepted = record
            break
    if accepted is None:
        with fenced(claim) as locked:
            _finish(locked, claim, JobStatus.FAILED, reason="no tier produced an answer")
        return
    job_govern(
        claim=claim, job=job, document=document, accepted=accepted, steps=records, total_cost=total_cost
    )


def _subject(job: Job, **extra: object) -> dict[str, object]:
    return {
        "job": job.pk,
        "application": job.application_id,
        "policy_version": job.policy_version_id,
        **extra,
    }


def _cost(call: CallResult) -> Decimal:
    usage = call.response.completion.usage
    if usage is None:
        return Decimal(0)
    return call.deployment.cost_usd(usage.prompt_tokens, usage.completion_tokens)


def _record_step(
    claim, job, index, plan_step, call: CallResult, score, is_accepted, step_cost, total_cost
) -> StepRecord:
    completion = call.response.completion
    usage = completion.usage
    output = facts.output_of(completion)
    deployment: ModelDeployment = call.deployment
    with fenced(claim) as locked:
        digest = payloads.store(
            output, kind="output", subject={"job": job.pk, "application": job.application_id}
        )
        step = Step.objects.create(
            job=locked,
            attempt=claim.attempt,
            index=index,
            tier=plan_step.tier,
            deployment=deployment,
            model=completion.model or deployment.model,
            provider_request_id=call.response.request_id[:200],
            calls=len(call.attempts),
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            cost_usd=step_cost,
            latency_ms=call.response.latency_ms,
            confidence=score.score,
            confidence_method=score.method,
            threshold=plan_step.escalate_below,
            outcome=StepOutcome.ACCEPTED if is_accepted else StepOutcome.ESCALATED,
            output=output,
        )
        locked.total_cost_usd = total_cost
        locked.total_tokens += step.prompt_tokens + step.completion_tokens
        subject = _subject(job, step=step.pk)
        ledger.append(
            "model.called",
            actor=claim.actor,
            subject=subject,
            body={
                "attempt": claim.attempt,
                "index": index,
                "tier": plan_step.tier,
                "deployment": deployment.name,
                "model": step.model,
                "provider_request_id": step.provider_request_id,
                "prompt_tokens": step.prompt_tokens,
                "completion_tokens": step.completion_tokens,
                "cost_usd": str(step_cost),
                "latency_ms": step.latency_ms,
                "output": digest,
                "calls": call.attempts_record(),
            },
        )
        ledger.append(
            "confidence.scored",
            actor=claim.actor,
            subject=subject,
            body={
                "attempt": claim.attempt,
                "index": index,
                "tier": plan_step.tier,
                "method": score.method,
                "score": score.score,
                "threshold": plan_step.escalate_below,
                "met": is_accepted,
                "detail": score.detail,
            },
        )
        if not is_accepted:
            locked.escalations += 1
            ledger.append(
                "job.escalated",
                actor=claim.actor,
                subject=subject,
                body={
                    "attempt": claim.attempt,
                    "from_tier": plan_step.tier,
                    "score": score.score,
                    "threshold": plan_step.escalate_below,
                    "cost_so_far_usd": str(total_cost),
                },
            )
        locked.save(update_fields=["total_cost_usd", "total_tokens", "escalations", "lease_expires_at"])
    _observe(plan_step.tier, deployment.name, step, is_accepted)
    return StepRecord(
        index=index, tier=plan_step.tier, output=output, confidence=score.score, cost_usd=step_cost
    )


def _observe(tier: str, deployment: str, step: Step, is_accepted: bool) -> None:
    metrics.STEPS.labels(tier, deployment, step.outcome).inc()
    metrics.COST.labels(tier).inc(float(step.cost_usd))
    metrics.LATENCY.labels(deployment).observe(step.latency_ms / 1000)
    if step.confidence is not None:
        metrics.CONFIDENCE.labels(deployment).observe(step.confidence)
    if not is_accepted:
        metrics.ESCALATIONS.labels(tier).inc()


def _record_unavailable(claim, job, index, plan_step, unavailable: TierUnavailable) -> None:
    with fenced(claim) as locked:
        Step.objects.create(
            job=locked,
            attempt=claim.attempt,
            index=index,
            tier=plan_step.tier,
            calls=len(unavailable.attempts),
            outcome=StepOutcome.FAILED,
            error=str(unavailable)[:2000],
        )
        ledger.append(
            "model.failed",
            actor=claim.actor,
            subject=_subject(job),
            body={
                "attempt": claim.attempt,
                "index": index,
                "tier": plan_step.tier,
                "error": str(unavailable)[:2000],
                "calls": [vars(attempt) for attempt in unavailable.attempts],
            },
        )
        locked.save(update_fields=["lease_expires_at"])


def _finish(locked: Job, claim: Claim, status: str, *, reason: str = "") -> None:
    locked.status = status
    locked.status_reason = reason
    locked.finished_at = timezone.now()
    locked.lease_expires_at = None
    locked.version += 1
    locked.save(update_fields=["status", "status_reason", "finished_at", "lease_expires_at", "version"])
    ledger.append(
        f"job.{status}",
        actor=claim.actor,
        subject={"job": locked.pk, "application": locked.application_id},
        body={"attempt": claim.attempt, "reason": reason},
    )
    metrics.JOBS_FINISHED.labels(status, locked.task_type).inc()
