"""The optional complexity classifier: one call on a cheap tier (the policy's `complexity.tier`) that
rates how hard a job is. Its score replaces the heuristic one when it gives a usable answer; both are
recorded with the route, together with what the call cost."""

from __future__ import annotations

from typing import Any

from routing.decide.complexity import classifier_prompt, parse_classifier_answer
from routing.decide.policy.document import PolicyDocument
from routing.execute.calls import TierUnavailable, call_tier
from routing.models import Job, ModelDeployment


def classify(job: Job, document: PolicyDocument, deployments: tuple[ModelDeployment, ...]) -> dict[str, Any]:
    tier = document.complexity_tier
    candidates = [d for d in deployments if d.tier == tier and d.enabled]
    request = {"messages": classifier_prompt(job.request["messages"]), "max_tokens": 8}
    try:
        call = call_tier(tier, candidates, request)
    except TierUnavailable as unavailable:
        return {"method": "classifier", "tier": tier, "score": None, "error": str(unavailable)[:300]}
    completion = call.response.completion
    answer = completion.choices[0].message.content
    usage = completion.usage
    cost = call.deployment.cost_usd(usage.prompt_tokens, usage.completion_tokens) if usage else 0
    return {
        "method": "classifier",
        "tier": tier,
        "deployment": call.deployment.name,
        "score": parse_classifier_answer(answer),
        "answer": (answer or "")[:200],
        "cost_usd": str(cost),
    }
