"""Scoring one step's answer with the plan's confidence method — including the methods that need a
second call (`verifier`: a judge on a named tier; `agreement`: a second sample) — and falling back to
the plan's declared method when the first is not applicable to this answer."""

from __future__ import annotations

from typing import Any

from routing.decide import confidence
from routing.decide.confidence import ConfidenceScore
from routing.decide.router import Plan, PlanStep
from routing.execute import facts
from routing.execute.calls import CallResult, TierUnavailable, call_tier
from routing.models import Job, ModelDeployment


def invalid_answer(step: PlanStep, problems: list[str]) -> ConfidenceScore:
    """An answer whose tool calls break their tools' schemas is no answer: it scores 0 (so the cascade
    escalates it) without asking the scorer, which might spend a verifier call on it."""
    detail = {"reason": "the tool calls do not match their tools' schemas", "invalid_tool_calls": problems}
    return ConfidenceScore(step.confidence_method, 0.0, False, {**detail, "scored_as": 0.0})


def score_step(
    *,
    job: Job | None,
    plan: Plan,
    step: PlanStep,
    call: CallResult,
    request: dict[str, Any],
    deployments: dict[str, ModelDeployment],
    schema: Any = None,
    output: dict[str, Any] | None = None,
) -> tuple[ConfidenceScore, list[CallResult]]:
    """The step's score and any extra calls made to compute it (their cost counts). Live execution and
    full re-execution both score here, so an answer whose tool calls break their schemas scores 0 in both."""
    if job is not None:  # offline evaluation scores recorded answers with no job, and so no tools
        answer = output if output is not None else facts.output_of(call.response.completion)
        invalid = facts.tool_call_problems(job, answer)
        if invalid:
            return invalid_answer(step, invalid), []
    extra: list[CallResult] = []
    method = step.confidence_method
    result = _score(method, job, plan, call, request, deployments, schema, extra)
    if not result.applicable and step.confidence_fallback:
        fallback = _score(step.confidence_fallback, job, plan, call, request, deployments, schema, extra)
        detail = {
            **dict(fallback.detail),
            "fallback_from": method,
            "fallback_reason": dict(result.detail).get("reason"),
        }
        result = ConfidenceScore(fallback.method, fallback.score, fallback.applicable, detail)
    if result.score is None:
        # Not applicable and no fallback: an unknown confidence is treated as no confidence at all.
        result = ConfidenceScore(result.method, 0.0, False, {**dict(result.detail), "scored_as": 0.0})
    return result, extra


def _score(
    method: str,
    job: Job | None,
    plan: Plan,
    call: CallResult,
    request: dict[str, Any],
    deployments: dict[str, ModelDeployment],
    schema: Any,
    extra: list[CallResult],
) -> ConfidenceScore:
    completion = call.response.completion
    if method == "verifier":
        if plan.verifier is None:
            return ConfidenceScore("verifier", None, False, {"reason": "the policy names no verifier tier"})
        asked = (job.request if job is not None else request)["messages"]
        judge_request = {
            "messages": confidence.verifier_prompt(asked, completion.choices[0].message.content),
            "logprobs": True,
            "top_logprobs": 2,
        }
        judges = [deployments[name] for name in plan.verifier.deployments if name in deployments]
        try:
            judged = call_tier(plan.verifier.tier, judges, judge_request)
        except TierUnavailable as unavailable:
            return ConfidenceScore("verifier", None, False, {"reason": str(unavailable)})
        extra.append(judged)
        return confidence.score("verifier", judged.response.completion)
    if method == "agreement":
        try:
            # The same request as the caller's (a forced tool_choice included), sampled with another seed.
            asked = facts.caller_parameters(job) if job is not None else {}
            parameters = {name: value for name, value in asked.items() if name != "seed"}
            second = call_tier(call.deployment.tier, [call.deployment], {**request, "seed": 1}, parameters)
        except TierUnavailable as unavailable:
            return ConfidenceScore("agreement", None, False, {"reason": str(unavailable)})
        extra.append(second)
        return confidence.score("agreement", completion, other=second.response.completion)
    if method == "schema":
        return confidence.score("schema", completion, schema=schema)
    return confidence.score(method, completion)
