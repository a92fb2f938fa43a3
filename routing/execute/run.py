"""The life of a job inside a worker: claim, route, call, score, escalate, govern, finish.

Two transactions in the common case: the claim with its route, and the accepted step with the job's
outcome; one more for each escalation. Each writes its ledger events and is fenced by the attempt
number (routing.execute.fencing). Provider calls happen outside any transaction, with the lease renewed
while they run.

A later attempt (the earlier one's worker died) resumes: a step an earlier attempt recorded as answered
and escalated is taken from its row — not paid for again, not recorded again — and the walk goes on from
the next step. Only a step the recorded answer would no longer escalate (the plan changed) is called again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Sum
from django.utils import timezone

from audit import ledger, payloads
from audit.sealer import sealing_deferred
from audit.selectors import events_list
from routing.decide import cascade
from routing.decide.confidence import ConfidenceScore
from routing.decide.policy.document import PolicyDocument
from routing.decide.router import Plan, PlanStep
from routing.execute import dispatch, facts, metrics, runs
from routing.execute.calls import CallResult, TierUnavailable, call_tier
from routing.execute.classifier import classify
from routing.execute.fencing import (
    Claim,
    Heartbeat,
    StaleAttempt,
    fenced,
    fenced_with_row,
    job_claim_update,
    lease_kept,
)
from routing.execute.governance import GovernanceOutcome, govern
from routing.execute.loading import job_for_run
from routing.execute.scoring import score_step
from routing.execute.settled import job_settled_on_commit
from routing.execute.shadow import shadow_wanted
from routing.execute.tier_down import held_reason, record_tier_wait, tier_wait
from routing.models import Job, JobStatus, ModelDeployment, Step, StepOutcome

logger = logging.getLogger(__name__)


@dataclass
class Progress:
    """What the job has spent so far: the cost and tokens of every attempt (a killed attempt's calls were
    paid for too), the steps and escalations of this one."""

    total_cost: Decimal = Decimal(0)
    total_tokens: int = 0
    escalations: int = 0
    steps: int = 0


def job_run(*, job_id: str, worker: str, job: Job | None = None, ended_run: str | None = None) -> bool:
    """Run the job if this worker can claim it. False when it could not (another holds it, or it is done).

    `job` is the row as its submitter just wrote it, with its policy version and application loaded, to
    save reading it back; only the claim decides whether this caller runs it. `ended_run`: a run known to
    be over, whose lease is taken over at once (routing.execute.fencing.job_claim_update).

    The run's commits (the claim, each step) are sealed into the ledger chain once, when it ends, not
    after each commit: a round trip and a sealing pass fewer per job, and its events wait for their seal
    no longer than the run itself (a provider call) — the beat task seals whatever a dead worker left."""
    with sealing_deferred():
        return _job_run(job_id=job_id, worker=worker, job=job, ended_run=ended_run)


def _job_run(*, job_id: str, worker: str, job: Job | None, ended_run: str | None) -> bool:
    if job is None:
        job = job_for_run(job_id)
    if job is None or job.status not in (JobStatus.QUEUED, JobStatus.RUNNING):
        return False
    held = job.status == JobStatus.RUNNING and job.lease_expires_at and job.lease_expires_at > timezone.now()
    if held and not (ended_run and job.claimed_by.endswith(f":{ended_run}")):
        return False  # a live worker holds it
    document = facts.document_for(job.policy_version)
    catalog = facts.catalog_snapshot()
    classified = classify(job, document, catalog.deployments) if document.complexity_method == "classifier" else None
    claimed = _claim_and_route(
        job, worker, lambda: facts.route_job(job, document, catalog, classified), document, ended_run
    )
    if claimed is None:
        return False
    claim, recorded, route = claimed
    if route.plan is None:
        return True
    try:
        with lease_kept(claim) as heartbeat:
            _execute_plan(claim, job, route.plan, route.complexity, document, catalog, recorded, heartbeat)
    except StaleAttempt:
        logger.info("job %s attempt %s superseded; stopping", claim.job_id, claim.attempt)
    return True


def _claim_and_route(
    job: Job,
    worker: str,
    route_for: Callable[[], facts.RouteOutcome],
    document: PolicyDocument,
    ended_run: str | None,
) -> tuple[Claim, dict[int, Step], facts.RouteOutcome] | None:
    """Claim the job and record its route, in one transaction; with the claim, the answered steps that
    earlier attempts recorded (by index), which this one resumes from, and the route. A job joining its
    run is routed under the run's lock, as the run's limits allow (routing.execute.runs)."""
    with transaction.atomic():
        run = runs.run_locked(job)
        route = route_for() if run is None else runs.run_admit_route(job, run, document, route_for)
        attempt = job_claim_update(
            job_id=str(job.pk), worker=worker, route=route.record, complexity=route.complexity, ended_run=ended_run
        )
        if attempt is None:
            if run is not None:
                job.run_admission = None  # not admitted: whoever claims it judges it again
            return None
        claim = Claim(job_id=str(job.pk), attempt=attempt, worker=worker)
        subject = _subject(job)
        if run is not None:
            runs.run_admission_record(job, run, actor=claim.actor, attempt=attempt)
        if attempt > settings.ARBITER_MAX_ATTEMPTS and attempt > settings.ARBITER_MAX_ATTEMPTS + _waits(job):
            # A poison job: every attempt so far died mid-way (an attempt that waited for a tier did not).
            cap = settings.ARBITER_MAX_ATTEMPTS
            _finish(
                claim,
                job,
                JobStatus.FAILED,
                f"gave up after {attempt - 1} attempts (ARBITER_MAX_ATTEMPTS={cap})",
            )
            return None
        recorded = _recorded_answers(job, attempt)
        ledger.append(
            "route.decided",
            actor=claim.actor,
            subject=subject,
            body={
                **route.record,
                "rule_id": route.plan.rule_id if route.plan else None,
                "attempt": attempt,
                "policy_version_sha256": job.policy_version.sha256,
                **(
                    {"recorded_steps": [{"attempt": step.attempt, "index": step.index} for step in recorded.values()]}
                    if recorded
                    else {}
                ),
            },
        )
        if route.budget.over_soft and not route.budget.over_hard:
            ledger.append(
                "budget.soft_limit_reached", actor=claim.actor, subject=subject, body=route.budget.to_record()
            )
        if route.plan is None:
            rejected = route.run_refused or (route.budget.over_hard and document.budgets.on_hard_limit == "reject")
            _finish(claim, job, JobStatus.REJECTED if rejected else JobStatus.FAILED, route.error or "no route")
    return claim, recorded, route


def _waits(job: Job) -> int:
    """How many attempts ended waiting for a tier that was down (they count against no attempt cap)."""
    return events_list(job=job.pk, event_type="job.waiting").count()


def _recorded_answers(job: Job, attempt: int) -> dict[int, Step]:
    """The latest answered-and-escalated step earlier attempts recorded at each index (none for a first
    attempt: no query). An accepted step is never among them: it commits with the job's outcome."""
    if attempt <= 1:
        return {}
    recorded: dict[int, Step] = {}
    steps = Step.objects.filter(job_id=job.pk, attempt__lt=attempt, outcome=StepOutcome.ESCALATED)
    for step in steps.select_related("deployment").order_by("index", "-attempt"):
        recorded.setdefault(step.index, step)
    return recorded


def _execute_plan(
    claim: Claim,
    job: Job,
    plan: Plan,
    complexity: float,
    document: PolicyDocument,
    catalog: facts.Catalog,
    recorded: dict[int, Step],
    heartbeat: Heartbeat,
) -> None:
    """The plan's cascade (routing.decide.cascade), answered by real calls or by the steps earlier attempts
    recorded, each new step recorded as it is decided: the step's row and events, and with the kept answer
    the job's outcome."""
    job.complexity = complexity
    deployments = {deployment.name: deployment for deployment in catalog.deployments}
    progress = _spent_before(job, claim.attempt)
    spent_before = progress.total_cost
    parameters = facts.caller_parameters(job)
    cost_cap = facts.cost_cap(job)
    walked = _Walked()

    def answer_for_step(index: int, plan_step: PlanStep) -> cascade.Answered | cascade.Unavailable:
        step = recorded.get(index)
        if step is not None and cascade.reusable(
            plan_step,
            tier=step.tier,
            confidence=step.confidence,
            walked_cost=walked.total,
            cost=step.cost_usd,
            last=index == len(plan.steps) - 1,
            cost_cap_usd=cost_cap,
        ):
            assert step.confidence is not None  # reusable() takes only a scored answer
            return cascade.Answered(step.confidence, step.cost_usd, _RecordedAnswer(step))
        candidates = [deployments[name] for name in plan_step.deployments if name in deployments]
        request = facts.provider_request(job, plan_step, plan, candidates)
        # The step's calls and a judge's each get the step budget; the lease is renewed no longer than that.
        heartbeat.renew_until = time.monotonic() + 2 * settings.ARBITER_STEP_BUDGET_S
        try:
            call = call_tier(plan_step.tier, candidates, request, parameters)
        except TierUnavailable as unavailable:
            return cascade.Unavailable(str(unavailable), unavailable)
        output = facts.output_of(call.response.completion, logprobs=bool(parameters.get("logprobs")))
        score, scoring_calls = score_step(
            job=job,
            plan=plan,
            step=plan_step,
            call=call,
            request=request,
            deployments=deployments,
            schema=facts.output_schema(job, plan),
            output=output,
        )
        step_cost = _cost(call) + sum((_cost(extra) for extra in scoring_calls), Decimal(0))
        assert score.score is not None  # score_step scores an answer it cannot judge as 0.0
        return cascade.Answered(score.score, step_cost, _LiveAnswer(call, score, output, step_cost))

    def record(visit: cascade.Visit) -> None:
        if isinstance(visit.result, cascade.Unavailable):
            _record_unavailable(claim, job, visit.index, visit.step, visit.result.failure, visit.last, document)
            return
        walked.total = Decimal(visit.total_cost)
        if isinstance(visit.result.answer, _RecordedAnswer):
            # Its row, its events and its cost (in spent_before) are an earlier attempt's: nothing to write.
            walked.resumed += Decimal(visit.result.cost)
            progress.steps += 1
            progress.escalations += 1
            return
        answer: _LiveAnswer = visit.result.answer
        # Every live cost is a Decimal (the walk keeps its type); earlier attempts' spend (resumed steps'
        # included) comes first.
        progress.total_cost = spent_before + walked.total - walked.resumed
        outcome = None
        if visit.accepted:
            # Governance sees the cost, including a cascade the job's cost cap ended.
            outcome = govern(
                job=job,
                document=document,
                output=answer.output,
                tier=visit.step.tier,
                confidence=answer.score.score,
                total_cost=progress.total_cost,
            )
        step = _record_step(
            claim,
            job,
            visit.index,
            visit.step,
            answer.call,
            answer.score,
            answer.output,
            answer.cost,
            progress,
            outcome,
        )
        if outcome is not None and outcome.status == JobStatus.COMPLETED and shadow_wanted(plan, visit.step.tier):
            dispatch.send(dispatch.SHADOW_COMPARE, str(job.pk), step.pk)

    cascade.cascade_walk(plan.steps, answer_for_step, cost_cap_usd=cost_cap, on_visit=record)


@dataclass
class _Walked:
    total: Decimal = Decimal(0)  # the walk's cost so far, resumed steps included
    resumed: Decimal = Decimal(0)  # of which, steps an earlier attempt paid for and recorded


@dataclass(frozen=True)
class _RecordedAnswer:
    step: Step


def _spent_before(job: Job, attempt: int) -> Progress:
    """The cost and tokens of the job's earlier attempts (none for a first attempt: no query)."""
    if attempt <= 1:
        return Progress()
    earlier = Step.objects.filter(job_id=job.pk, attempt__lt=attempt).aggregate(
        cost=Sum("cost_usd"), tokens=Sum(F("prompt_tokens") + F("completion_tokens"))
    )
    return Progress(total_cost=earlier["cost"] or Decimal(0), total_tokens=earlier["tokens"] or 0)


@dataclass(frozen=True)
class _LiveAnswer:
    call: CallResult
    score: ConfidenceScore
    output: dict[str, Any]
    cost: Decimal


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
    claim: Claim,
    job: Job,
    index: int,
    plan_step: PlanStep,
    call: CallResult,
    score: ConfidenceScore,
    output: dict[str, Any],
    step_cost: Decimal,
    progress: Progress,
    outcome: GovernanceOutcome | None,
) -> Step:
    """One transaction: the step, its events and — when it is the accepted one — the job's outcome."""
    completion = call.response.completion
    usage = completion.usage
    deployment: ModelDeployment = call.deployment
    prompt_tokens = usage.prompt_tokens if usage else 0
    completion_tokens = usage.completion_tokens if usage else 0
    progress.total_tokens += prompt_tokens + completion_tokens
    progress.steps += 1
    if outcome is None:
        progress.escalations += 1
    job_fields: dict[str, Any] = {
        "total_cost_usd": progress.total_cost,
        "total_tokens": progress.total_tokens,
        "escalations": progress.escalations,
    }
    if outcome is not None:
        job_fields.update(outcome.job_fields(output, index, plan_step.tier, score.score))
        # Named back to the caller with the released answer (x-arbiter-ignored-params).
        job_fields["result"]["ignored_parameters"] = list(call.dropped)
        job_fields["version"] = job.version + 1
    step = Step(
        job_id=job.pk,
        attempt=claim.attempt,
        index=index,
        tier=plan_step.tier,
        deployment=deployment,
        model=completion.model or deployment.model,
        provider_request_id=call.response.request_id[:200],
        calls=len(call.attempts),
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        cost_usd=step_cost,
        latency_ms=call.response.latency_ms,
        confidence=score.score,
        confidence_method=score.method,
        threshold=plan_step.escalate_below,
        outcome=StepOutcome.ESCALATED if outcome is None else StepOutcome.ACCEPTED,
        output=output,
        error="; ".join(score.detail.get("invalid_tool_calls", ()))[:2000],
    )
    with fenced_with_row(claim, step, **job_fields):
        digest = payloads.store(output, kind="output", subject={"job": job.pk, "application": job.application_id})
        subject = _subject(job, step=step.pk)
        common = {"attempt": claim.attempt, "index": index, "tier": plan_step.tier}
        events = [
            ledger.Entry(
                "model.called",
                claim.actor,
                subject,
                {
                    **common,
                    "deployment": deployment.name,
                    "model": step.model,
                    "provider_request_id": step.provider_request_id,
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "cost_usd": str(step_cost),
                    "latency_ms": step.latency_ms,
                    "output": digest,
                    "calls": call.attempts_record(),
                    **({"parameters_dropped": list(call.dropped)} if call.dropped else {}),
                },
            ),
            ledger.Entry(
                "confidence.scored",
                claim.actor,
                subject,
                {
                    **common,
                    "method": score.method,
                    "score": score.score,
                    "threshold": plan_step.escalate_below,
                    "met": outcome is not None,
                    "detail": dict(score.detail),
                },
            ),
        ]
        if outcome is None:
            escalated = {
                **common,
                "from_tier": plan_step.tier,
                "score": score.score,
                "threshold": plan_step.escalate_below,
                "cost_so_far_usd": str(progress.total_cost),
            }
            events.append(ledger.Entry("job.escalated", claim.actor, subject, escalated))
        else:
            events += outcome.write(
                claim=claim,
                job=job,
                tier=plan_step.tier,
                confidence=score.score,
                total_cost=progress.total_cost,
                steps=progress.steps,
            )
        # One statement for the step's events (model call, score, escalation or outcome), in that order.
        ledger.append_many(events)
    _observe(plan_step.tier, deployment.name, step)
    if outcome is not None:
        metrics.JOBS_FINISHED.labels(outcome.status, job.task_type).inc()
    return step


def _observe(tier: str, deployment: str, step: Step) -> None:
    metrics.STEPS.labels(tier, deployment, step.outcome).inc()
    metrics.COST.labels(tier).inc(float(step.cost_usd))
    metrics.LATENCY.labels(deployment).observe(step.latency_ms / 1000)
    if step.confidence is not None:
        metrics.CONFIDENCE.labels(deployment).observe(step.confidence)
    if step.outcome == StepOutcome.ESCALATED:
        metrics.ESCALATIONS.labels(tier).inc()


def _record_unavailable(
    claim: Claim,
    job: Job,
    index: int,
    plan_step: PlanStep,
    unavailable: TierUnavailable,
    last: bool,
    document: PolicyDocument,
) -> None:
    """A step whose tier could not answer. On the last step the job fails — unless the tier is down (every
    breaker open) and the policy's `tier_down` says to hold it for a person or to wait for the tier."""
    # The request itself refused by the provider (a 400...): the caller is told the provider's reason.
    refused = unavailable.request_refused
    down = last and refused is None and unavailable.tier_down
    action = document.tier_down.action if down else "fail"
    wait = tier_wait(job, document, unavailable) if action == "wait" else None
    fails = last and action != "hold" and wait is None
    fields: dict[str, Any] = {}
    if action == "hold":
        fields = {"status": JobStatus.AWAITING_APPROVAL, "status_reason": held_reason(plan_step.tier)}
    elif wait is not None:
        # Back to the queue until the breakers let a probe through; the sweeper would send it again only
        # well after that (dispatched_at is the moment it is due).
        reason = f"waiting for tier {plan_step.tier}, which is down, until {wait.retry_at:%H:%M:%S} UTC"
        fields = {"status": JobStatus.QUEUED, "status_reason": reason, "dispatched_at": wait.retry_at}
    elif fails:
        reason = (refused.error if refused else str(unavailable))[:2000]
        fields = {"status": JobStatus.FAILED, "status_reason": reason, "finished_at": timezone.now()}
    if fields:
        fields["version"] = job.version + 1
    with fenced(claim, **fields):
        Step.objects.create(
            job_id=job.pk,
            attempt=claim.attempt,
            index=index,
            tier=plan_step.tier,
            calls=len(unavailable.attempts),
            outcome=StepOutcome.FAILED,
            error=str(unavailable)[:2000],
        )
        failed = {
            "attempt": claim.attempt,
            "index": index,
            "tier": plan_step.tier,
            "error": str(unavailable)[:2000],
            "calls": [vars(attempt) for attempt in unavailable.attempts],
        }
        ledger.append("model.failed", actor=claim.actor, subject=_subject(job), body=failed)
        if action == "hold" or wait is not None:
            record_tier_wait(claim, job, plan_step.tier, document, wait, _subject(job))
        elif fails:
            job_settled_on_commit(job, "job.failed")
            tier_down = {"tier_down": {"tier": plan_step.tier, "action": document.tier_down.action}} if down else {}
            ledger.append(
                "job.failed",
                actor=claim.actor,
                subject=_subject(job),
                body={"attempt": claim.attempt, "reason": str(unavailable)[:2000]}
                | ({"upstream_status": refused.status} if refused else {})
                | tier_down,
            )
    if fails:
        metrics.JOBS_FINISHED.labels(JobStatus.FAILED, job.task_type).inc()


def _finish(claim: Claim, job: Job, status: str, reason: str) -> None:
    """End the job inside the caller's transaction (which holds the claim)."""
    Job.objects.filter(pk=job.pk, attempt=claim.attempt).update(
        status=status,
        status_reason=reason,
        finished_at=timezone.now(),
        lease_expires_at=None,
        version=job.version + 1,
    )
    ledger.append(
        f"job.{status}",
        actor=claim.actor,
        subject={"job": job.pk, "application": job.application_id},
        body={"attempt": claim.attempt, "reason": reason},
    )
    job_settled_on_commit(job, f"job.{status}")
    transaction.on_commit(lambda: metrics.JOBS_FINISHED.labels(status, job.task_type).inc())
