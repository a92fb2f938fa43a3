"""Routing-only replay of past jobs under a draft policy version: no model is called.

For each past job, the router decides again under the draft (same job facts; the current catalog, without
latency statistics, since those are not historical), and the draft's cascade is walked over the steps the
job actually ran, using their *recorded* confidences and costs, by the walk a worker uses
(routing.decide.cascade: `PlanStep.accepts`, and the job's own cost cap ending the cascade where the
recorded costs reach it). The counterfactual is unknown — and reported as such, never guessed — when the
draft reaches a tier the original never called (or that failed in it), or when the step's recorded
confidence was computed by a method the draft would not use. The draft's approval rules are evaluated on
the answer the draft would accept, as a worker's governance evaluates them.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from routing.decide import cascade
from routing.decide.confidence import normalise_answer
from routing.decide.policy.document import PolicyDocument, policy_from_data
from routing.decide.router import DeploymentInfo, PlanStep, route
from routing.execute.facts import cost_cap, deployment_info, job_facts
from routing.execute.governance import govern
from routing.models import Job, ModelDeployment, Policy, PolicyVersion, Step, StepOutcome
from routing.selectors import steps_walked

DETAIL_LIMIT = 50


@dataclass(frozen=True)
class ReexecutedStep:
    """One step of a full re-execution: what a worker would have recorded, kept in memory only."""

    tier: str
    deployment: str
    confidence: float | None
    confidence_method: str
    cost_usd: Decimal
    output: dict[str, Any]
    accepted: bool


AnsweredStep = Step | ReexecutedStep


@dataclass(frozen=True)
class JobReplay:
    job_id: str
    original_tier: str
    original_cost: float
    original_steps: tuple[Step, ...]
    original_holds: tuple[str, ...]
    draft_tier: str | None = None  # None: unknown or unroutable
    draft_cost: float | None = None
    draft_steps: tuple[AnsweredStep, ...] = ()
    draft_holds: tuple[str, ...] = ()
    answer_differs: bool = False
    unknown: str | None = None
    draft_stop: str | None = None  # why the draft's cascade stopped (routing.decide.cascade.Stop)


def _original_methods(job: Job) -> dict[str, str]:
    """tier -> the confidence method the original plan asked for (the step records the one used)."""
    plan = (job.route or {}).get("plan") or {}
    return {step["tier"]: step.get("confidence_method") for step in plan.get("steps", [])}


def _score_reusable(step: PlanStep, recorded: Step, original_method: str | None) -> bool:
    """Would the draft have scored this answer by the method that produced the recorded score?"""
    if recorded.confidence_method == step.confidence_method:
        return True
    # The recorded score came from the fallback because the primary did not apply to this answer; the
    # draft with the same primary and that fallback would have fallen back the same way.
    return recorded.confidence_method == step.confidence_fallback and original_method == step.confidence_method


def _signature(output: Mapping[str, Any] | None) -> tuple[str, tuple[tuple[str, str], ...]]:
    output = output or {}
    calls = tuple((str(call.get("name")), repr(call.get("arguments"))) for call in output.get("tool_calls") or [])
    return normalise_answer(output.get("content") or ""), calls


def original_of(job: Job) -> JobReplay:
    """The original side of a replay: the steps its cascade walked (across attempts, when a later one
    resumed), their cost and the first hold."""
    steps = steps_walked(job.steps.all())
    requests = sorted(job.approval_requests.all(), key=lambda request: (request.created_at, request.pk))
    return JobReplay(
        job_id=str(job.pk),
        original_tier=job.final_tier,
        original_cost=math.fsum(float(step.cost_usd) for step in steps),
        original_steps=tuple(steps),
        original_holds=tuple(requests[0].rule_ids) if requests else (),
    )


def answer_differs(original: JobReplay, final: AnsweredStep) -> bool:
    original_final = original.original_steps[-1] if original.original_steps else None
    if original_final is None:
        return True
    if isinstance(final, Step) and final.pk == original_final.pk:
        return False
    return _signature(final.output) != _signature(original_final.output)


def draft_holds(
    job: Job, document: PolicyDocument, output: Mapping[str, Any] | None, tier: str, confidence, cost
) -> tuple[str, ...]:
    """The draft's approval rules that would hold this answer: a worker's governance decision
    (routing.execute.governance.govern), its tool-schema check included, without its writes."""
    outcome = govern(
        job=job, document=document, output=dict(output or {}), tier=tier, confidence=confidence, total_cost=cost
    )
    return tuple(hold["rule"] for hold in outcome.record["holds"])


def replay_job(job: Job, document: PolicyDocument, catalog: Sequence[DeploymentInfo]) -> JobReplay:
    """The draft's cascade (routing.decide.cascade: the live walk, the job's cost cap included) over the
    steps the job ran. The source differs from a worker's in one way only: a step the original cannot
    answer for — its tier never called, failed, or scored by another method — makes the replay unknown
    rather than a guess. (A failed tier is unknown, not unavailable: the draft might have called another
    of the tier's deployments, and whether that one answered is not on record.)"""
    recorded_steps = list(job.steps.all())
    original = original_of(job)
    steps = list(original.original_steps)
    downgraded = bool(((job.route or {}).get("plan") or {}).get("downgraded"))
    facts = job_facts(job, job.complexity or 0.0, budget_hard_limit_reached=downgraded)
    result = route(facts, document, catalog)
    if result.plan is None:
        return _unknown(original, f"unroutable: {result.error}")
    by_tier = {step.tier: step for step in steps}
    methods = _original_methods(job)

    def recorded_answer(index: int, plan_step: PlanStep) -> cascade.Answered | cascade.Unknown:
        recorded = by_tier.get(plan_step.tier)
        if recorded is None:
            failed = any(step.tier == plan_step.tier and step.outcome == StepOutcome.FAILED for step in recorded_steps)
            return cascade.Unknown(f"{plan_step.tier} {'failed' if failed else 'was never called'} in the original")
        if recorded.confidence is None or not _score_reusable(plan_step, recorded, methods.get(plan_step.tier)):
            return cascade.Unknown(
                f"{plan_step.tier}'s recorded confidence ({recorded.confidence_method or 'none'}) is not "
                f"what the draft scores with ({plan_step.confidence_method})"
            )
        return cascade.Answered(recorded.confidence, recorded.cost_usd, recorded)

    walk = cascade.cascade_walk(result.plan.steps, recorded_answer, cost_cap_usd=cost_cap(job))
    if walk.final is None:
        return _unknown(original, walk.reason or walk.stop)
    walked = [visit.result.answer for visit in walk.answered]
    final = walked[-1]
    cost = math.fsum(float(step.cost_usd) for step in walked)
    return replace(
        original,
        draft_tier=final.tier,
        draft_cost=cost,
        draft_steps=tuple(walked),
        draft_holds=draft_holds(job, document, final.output, final.tier, final.confidence, walk.total_cost),
        draft_stop=walk.stop,
        answer_differs=answer_differs(original, final),
    )


def _unknown(original: JobReplay, reason: str) -> JobReplay:
    return replace(original, unknown=reason)


def _escalation_rates(step_lists: Iterable[Sequence[AnsweredStep]]) -> dict[str, float]:
    calls, escalated = Counter(), Counter()
    for steps in step_lists:
        for position, step in enumerate(steps):
            calls[step.tier] += 1
            escalated[step.tier] += position < len(steps) - 1
    return {tier: round(escalated[tier] / calls[tier], 6) for tier in calls}


def history_jobs(
    *,
    application: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 1000,
    policy: Policy | None = None,
):
    """Past jobs that produced an answer, newest first (run under a version of `policy`, if given)."""
    jobs = Job.objects.exclude(final_tier="").select_related("application")
    if policy is not None:
        jobs = jobs.filter(policy_version__policy=policy)
    if application:
        jobs = jobs.filter(application__slug=application)
    if since:
        jobs = jobs.filter(created_at__gte=since)
    if until:
        jobs = jobs.filter(created_at__lt=until)
    return jobs.order_by("-created_at", "-id").prefetch_related("steps", "approval_requests")[:limit]


def progress_every(total: int) -> int:
    """Report progress about every 1% of the jobs (every job for runs under a hundred)."""
    return max(1, total // 100)


def history_replay(
    *,
    version: PolicyVersion,
    jobs: Sequence[Job],
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    document = policy_from_data(version.document)
    catalog = [deployment_info(deployment) for deployment in ModelDeployment.objects.all()]
    total, every = len(jobs), progress_every(len(jobs))
    if progress:
        progress(0, total)
    replays = []
    for done, job in enumerate(jobs, start=1):
        replays.append(replay_job(job, document, catalog))
        if progress and (done % every == 0 or done == total):
            progress(done, total)
    return history_report(version, replays, mode="routing")


def history_report(version: PolicyVersion, replays: Sequence[JobReplay], *, mode: str) -> dict[str, Any]:
    """The figures both modes report, over the jobs whose counterfactual is known."""
    decided = [replay for replay in replays if replay.unknown is None]
    transitions = Counter(
        f"{replay.original_tier}->{replay.draft_tier}"
        for replay in decided
        if replay.draft_tier != replay.original_tier
    )
    original_holds = Counter(rule for replay in decided for rule in replay.original_holds)
    draft_holds = Counter(rule for replay in decided for rule in replay.draft_holds)
    original_cost = math.fsum(replay.original_cost for replay in decided)
    draft_cost = math.fsum(replay.draft_cost or 0.0 for replay in decided)
    changed = [replay for replay in decided if replay.draft_tier != replay.original_tier or replay.answer_differs]
    return {
        "mode": mode,
        "policy_version": version.pk,
        "policy_sha256": version.sha256,
        "jobs": len(replays),
        "decided": len(decided),
        "unknown": len(replays) - len(decided),
        "unknown_reasons": dict(Counter(replay.unknown for replay in replays if replay.unknown).most_common()),
        "final_tier_changed": sum(1 for replay in decided if replay.draft_tier != replay.original_tier),
        "final_tier_transitions": dict(transitions.most_common()),
        # Why the draft's cascade stopped: confident, the job's cost cap, or the last step's answer.
        "draft_stops": dict(Counter(str(replay.draft_stop) for replay in decided).most_common()),
        "answers_differ": sum(1 for replay in decided if replay.answer_differs),
        "escalation_rate": {
            "original": _escalation_rates(replay.original_steps for replay in decided),
            "draft": _escalation_rates(replay.draft_steps for replay in decided),
        },
        "cost_usd": {
            "original": round(original_cost, 8),
            "draft": round(draft_cost, 8),
            "delta": round(draft_cost - original_cost, 8),
            "relative": round(draft_cost / original_cost, 6) if original_cost else None,
        },
        "approvals": {
            "original_held": sum(1 for replay in decided if replay.original_holds),
            "draft_held": sum(1 for replay in decided if replay.draft_holds),
            "newly_held": sum(1 for replay in decided if replay.draft_holds and not replay.original_holds),
            "released": sum(1 for replay in decided if replay.original_holds and not replay.draft_holds),
            "original_by_rule": dict(sorted(original_holds.items())),
            "draft_by_rule": dict(sorted(draft_holds.items())),
        },
        "changes": [
            {
                "job": replay.job_id,
                "original_tier": replay.original_tier,
                "draft_tier": replay.draft_tier,
                "draft_stop": None if replay.draft_stop is None else str(replay.draft_stop),
                "answer_differs": replay.answer_differs,
                "original_holds": list(replay.original_holds),
                "draft_holds": list(replay.draft_holds),
            }
            for replay in changed[:DETAIL_LIMIT]
        ],
    }
