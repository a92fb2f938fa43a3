"""One tier's answer to one recorded item, scored by the plan's confidence method as a live job's is.

`ServerResponder` calls the local model server in recorded-outcomes mode through `routing.execute.providers.chat`
(the one adapter, the official SDK); `InMemoryResponder` builds the very same completion body with the
model server's own code and parses it with the SDK's model, without HTTP — for calibration runs repeated
many times. Both score with `routing.execute.scoring.score_step`, so a method that is not applicable
falls back, or scores 0, exactly as in a worker.

Methods that need a second model call (`verifier`, `agreement`) cannot be replayed from recorded answers
(the file holds no judge replies, and a second sample would repeat the first), so a plan using them is
refused rather than scored with something else.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from openai.types.chat import ChatCompletion

from evaluation.recorded.outcomes import (
    EvaluationError,
    Outcomes,
    Price,
    TierMap,
    answer_correct,
    answer_cost,
)
from modelserver import ModelServer
from modelserver.completions import completion_body
from modelserver.protocol import ApiError, parse_chat_request
from modelserver.recorded import RecordedBackend, RecordedItem, load_outcomes
from routing.decide.router import Plan, PlanStep
from routing.execute.calls import CallResult
from routing.execute.providers import Endpoint, ProviderError, ProviderResponse, chat
from routing.execute.scoring import score_step

UNREPLAYABLE_METHODS = frozenset({"verifier", "agreement"})


@dataclass(frozen=True)
class Answer:
    """What the cascade sees of one tier's answer to one item."""

    tier: str
    model: str
    content: str
    confidence: float  # the estimator's score; not applicable and no fallback scores 0, as live
    confidence_method: str
    confidence_applicable: bool
    correct: bool | None
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    latency_ms: float | None  # recorded; None when the file records none


class Responder(Protocol):
    def answer(self, item: RecordedItem, step: PlanStep, plan: Plan) -> Answer: ...


def check_replayable(plan: Plan) -> None:
    for step in plan.steps:
        used = {step.confidence_method, step.confidence_fallback} & UNREPLAYABLE_METHODS
        if used:
            raise EvaluationError(
                f"rule {plan.rule_id!r} scores {step.tier} with {', '.join(sorted(used))}, which needs a "
                "second model call; recorded outcomes cannot replay it (use logprob or self_report)"
            )


def provider_request(item: RecordedItem, step: PlanStep) -> dict[str, Any]:
    # As routing.execute.facts.provider_request, minus max_tokens: the recorded answers were produced
    # without the policy's limit, and truncating them would change answers the file says are right.
    request: dict[str, Any] = {"messages": item.messages}
    if step.confidence_method == "logprob":
        request["logprobs"] = True
    return request


class _Scorer:
    def __init__(self, outcomes: Outcomes, tiers: TierMap, prices: dict[str, Price]) -> None:
        missing = [tier for tier in tiers if tier not in prices]
        if missing:
            raise EvaluationError(f"no catalog price for tier {', '.join(missing)}")
        self.tiers, self.prices = tiers, prices

    def model(self, item: RecordedItem, step: PlanStep) -> str:
        model = self.tiers.get(step.tier)
        if model is None:
            raise EvaluationError(f"the plan for item {item.id} calls tier {step.tier}, which --tiers does not map")
        if model not in item.responses:
            raise EvaluationError(f"item {item.id} has no recorded response from model {model!r}")
        return model

    def scored(self, item: RecordedItem, step: PlanStep, plan: Plan, model: str, response: ProviderResponse) -> Answer:
        request = provider_request(item, step)
        score, extra = score_step(
            job=None,  # only the judge call reads the job; that method is refused above
            plan=plan,
            step=step,
            call=CallResult(deployment=None, response=response),  # type: ignore[arg-type]
            request=request,
            deployments={},
            schema=plan.output_schema,
        )
        assert not extra
        completion = response.completion
        usage = completion.usage
        content = completion.choices[0].message.content or ""
        recorded = item.responses[model]
        prompt = usage.prompt_tokens if usage else 0
        completion_count = usage.completion_tokens if usage else 0
        return Answer(
            tier=step.tier,
            model=model,
            content=content,
            confidence=float(score.score),  # type: ignore[arg-type]
            confidence_method=score.method,
            confidence_applicable=score.applicable,
            correct=answer_correct(recorded, content, item.reference),
            prompt_tokens=prompt,
            completion_tokens=completion_count,
            cost_usd=answer_cost(recorded, prompt, completion_count, self.prices[step.tier]),
            latency_ms=recorded.latency_ms,
        )


class ServerResponder(_Scorer):
    """Answers over HTTP from a model server in recorded-outcomes mode."""

    def __init__(self, base_url: str, outcomes: Outcomes, tiers: TierMap, prices: dict[str, Price]) -> None:
        super().__init__(outcomes, tiers, prices)
        self.base_url = base_url

    def answer(self, item: RecordedItem, step: PlanStep, plan: Plan) -> Answer:
        check_replayable(plan)
        model = self.model(item, step)
        endpoint = Endpoint(
            name=f"eval-{step.tier}", base_url=self.base_url, model=model, api_key_env="", timeout_s=30.0
        )
        try:
            response = chat(endpoint, provider_request(item, step))
        except ProviderError as error:
            raise EvaluationError(f"item {item.id}, {step.tier} ({model}): {error}") from None
        return self.scored(item, step, plan, model, response)


class InMemoryResponder(_Scorer):
    """The model server's recorded backend and completion body, without the HTTP round trip."""

    def __init__(self, outcomes: Outcomes, tiers: TierMap, prices: dict[str, Price]) -> None:
        super().__init__(outcomes, tiers, prices)
        self.backend = RecordedBackend(load_outcomes(outcomes.raw))

    def answer(self, item: RecordedItem, step: PlanStep, plan: Plan) -> Answer:
        check_replayable(plan)
        model = self.model(item, step)
        try:
            request = parse_chat_request({"model": model, **provider_request(item, step)})
            reply = self.backend.reply(request)
        except ApiError as error:
            raise EvaluationError(f"item {item.id}, {step.tier} ({model}): {error.message}") from None
        body = completion_body(request, reply, fingerprint="fp_in_memory")
        completion = ChatCompletion.model_validate(body)
        return self.scored(item, step, plan, model, ProviderResponse(completion, body["id"], 0))


@contextmanager
def recorded_server(outcomes: Outcomes) -> Iterator[ModelServer]:
    """An in-process model server replaying `outcomes` (gzipped files included: it is given the items)."""
    with ModelServer(mode="recorded", outcomes=outcomes.raw, latency_scale=0) as server:
        yield server


@contextmanager
def responder_for(
    outcomes: Outcomes, tiers: TierMap, prices: dict[str, Price], *, in_memory: bool = False
) -> Iterator[Responder]:
    """Over HTTP through an in-process model server (the default), or in memory."""
    if in_memory:
        yield InMemoryResponder(outcomes, tiers, prices)
        return
    with recorded_server(outcomes) as server:
        yield ServerResponder(server.base_url, outcomes, tiers, prices)
