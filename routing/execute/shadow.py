"""Shadow sampling: a set share of accepted cheap-tier answers is also sent to a higher tier in the
background. The shadow answer is never returned to the caller; whether the two agree is recorded in
the ledger (`shadow.compared`) as a label for calibrating thresholds, with its cost counted apart from
the job's."""

from __future__ import annotations

import random
from decimal import Decimal

from django.db import transaction

from audit import ledger
from audit.ledger import Actor
from routing.decide import confidence
from routing.decide.router import Plan
from routing.decide.tiers import tier_rank
from routing.execute.calls import TierUnavailable, call_tier
from routing.models import Job, ModelDeployment, Step


def shadow_wanted(plan: Plan, tier: str, rng: random.Random | None = None) -> bool:
    shadow = plan.shadow
    if shadow is None or shadow.rate <= 0:
        return False
    if (tier_rank(shadow.tier) or 0) <= (tier_rank(tier) or 0):
        return False
    return (rng or random).random() < shadow.rate


def _as_completion(output: dict) -> dict:
    tool_calls = [
        {
            "id": call.get("id", ""),
            "type": "function",
            "function": {"name": call["name"], "arguments": call["arguments"]},
        }
        for call in output.get("tool_calls") or []
    ]
    return {"choices": [{"message": {"content": output.get("content"), "tool_calls": tool_calls}}]}


def shadow_compare(*, job_id: str, step_id: int) -> bool:
    step = Step.objects.select_related("job").filter(pk=step_id, job_id=job_id).first()
    shadow = ((step.job.route or {}).get("plan") or {}).get("shadow") if step else None
    if step is None or not shadow:
        return False
    job: Job = step.job
    deployments = list(ModelDeployment.objects.filter(name__in=shadow["deployments"], enabled=True))
    deployments.sort(key=lambda d: shadow["deployments"].index(d.name))
    request = {"messages": job.request["messages"]}
    if job.request.get("tools"):
        request["tools"] = job.request["tools"]
    subject = {"job": job.pk, "application": job.application_id, "step": step.pk}
    try:
        # The caller's parameters too (a forced tool_choice): the shadow answers the same request.
        call = call_tier(shadow["tier"], deployments, request, job.request.get("parameters") or {})
    except TierUnavailable as unavailable:
        with transaction.atomic():
            ledger.append(
                "shadow.failed",
                actor=Actor.system("shadow"),
                subject=subject,
                body={"tier": shadow["tier"], "error": str(unavailable)[:500]},
            )
        return False
    agreement = confidence.score("agreement", _as_completion(step.output or {}), other=call.response.completion)
    usage = call.response.completion.usage
    cost = call.deployment.cost_usd(usage.prompt_tokens, usage.completion_tokens) if usage else Decimal(0)
    with transaction.atomic():
        ledger.append(
            "shadow.compared",
            actor=Actor.system("shadow"),
            subject=subject,
            body={
                "tier": step.tier,
                "confidence": step.confidence,
                "threshold": step.threshold,
                "shadow_tier": shadow["tier"],
                "shadow_deployment": call.deployment.name,
                "agreement": agreement.score,
                "shadow_cost_usd": str(cost),
            },
        )
    return True
