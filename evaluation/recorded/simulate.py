"""A policy run over recorded items, and the baselines it is judged against.

Every item goes through what a live job goes through: `route()` under the policy document and a catalog
of one deployment per mapped tier (priced as the demo catalog), each plan step answered by its tier's
recorded model and scored by the plan's confidence method, the live cascade walk (routing.decide.cascade:
`PlanStep.accepts`, strictly below the threshold escalates, equal is accepted; and a job cost cap, which a
recorded item does not carry) deciding whether to stop, and the document's approval rules evaluated on
the accepted answer. A cascade pays for every tier it called.

The baselines are computed from the file alone, on the same items:
- `tier_only[t]`: every item answered by tier t; `flagship_only` is the most capable tier mapped;
- `oracle`: each item answered by its cheapest correct tier (by that item's cost), or, when no tier is
  right, by the top tier at its cost and wrong — the best any router could do with these models;
- `random_mix`: each item sent to one tier at random with the policy's final-tier shares (so the same
  flagship share), no cascade; reported as the exact expected value over that randomisation, not a sample.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from evaluation.recorded.outcomes import (
    Outcomes,
    Price,
    RecordedAnswer,
    TierMap,
    recorded_answer,
    tokens_estimated,
    top_tier,
)
from evaluation.recorded.responders import Answer, Responder
from modelserver.recorded import RecordedItem
from routing.decide import cascade
from routing.decide.approval_rules import ResultFacts, evaluate_approvals
from routing.decide.complexity import estimate_complexity
from routing.decide.policy.document import PolicyDocument
from routing.decide.router import DeploymentInfo, JobFacts, PlanStep, route
from routing.services.jobs import estimate_tokens

EVAL_CAPABILITIES = frozenset({"tools", "logprobs", "json_schema"})


def eval_catalog(tiers: TierMap, prices: Mapping[str, Price]) -> tuple[DeploymentInfo, ...]:
    """One deployment per mapped tier, able to serve any rule; the router drops unmapped tiers."""
    return tuple(
        DeploymentInfo(
            name=f"eval-{tier}",
            tier=tier,
            region="us",
            capabilities=EVAL_CAPABILITIES,
            input_price_per_mtok=prices[tier].input_per_mtok,
            output_price_per_mtok=prices[tier].output_per_mtok,
        )
        for tier in tiers
    )


def item_facts(item: RecordedItem) -> JobFacts:
    """The facts a job submitted with this item's messages would be routed on."""
    return JobFacts(
        task_type=item.task_type or "general",
        input_tokens=estimate_tokens(item.messages),
        complexity=estimate_complexity(item.messages).score,
    )


@dataclass(frozen=True)
class StepRun:
    answer: Answer
    threshold: float | None
    accepted: bool


@dataclass(frozen=True)
class ItemRun:
    item_id: str
    task_type: str
    rule_id: str | None
    steps: tuple[StepRun, ...]
    holds: tuple[str, ...] = ()
    error: str | None = None  # the router's, when no plan could be made

    @property
    def final(self) -> Answer:
        return self.steps[-1].answer

    @property
    def cost_usd(self) -> float:
        return math.fsum(step.answer.cost_usd for step in self.steps)

    @property
    def latency_ms(self) -> float | None:
        latencies = [step.answer.latency_ms for step in self.steps]
        return None if any(value is None for value in latencies) else math.fsum(latencies)  # type: ignore[arg-type]


def run_item(
    item: RecordedItem, document: PolicyDocument, catalog: Sequence[DeploymentInfo], responder: Responder
) -> ItemRun:
    facts = item_facts(item)
    result = route(facts, document, catalog)
    if result.plan is None:
        return ItemRun(item.id, facts.task_type, result.explanation.matched_rule, (), error=result.error)
    plan = result.plan

    def recorded_outcome(index: int, step: PlanStep) -> cascade.Answered:
        answer = responder.answer(item, step, plan)
        return cascade.Answered(answer.confidence, answer.cost_usd, answer)

    # The live walk; a recorded item carries no job cost cap, so none ends its cascade early.
    walk = cascade.cascade_walk(plan.steps, recorded_outcome, cost_cap_usd=facts.constraints.cost_cap_usd)
    steps = tuple(StepRun(visit.result.answer, visit.step.escalate_below, visit.accepted) for visit in walk.visits)
    run = ItemRun(item.id, facts.task_type, plan.rule_id, steps)
    decision = evaluate_approvals(
        document,
        ResultFacts(job=facts, final_confidence=run.final.confidence, final_tier=run.final.tier, cost_usd=run.cost_usd),
    )
    return replace(run, holds=tuple(hold.rule_id for hold in decision.holds))


def run_policy(
    items: Iterable[RecordedItem],
    document: PolicyDocument,
    catalog: Sequence[DeploymentInfo],
    responder: Responder,
    *,
    workers: int = 1,
) -> list[ItemRun]:
    """Every item through the policy, in order; `workers` > 1 overlaps the model server round trips."""
    if workers <= 1:
        return [run_item(item, document, catalog, responder) for item in items]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda item: run_item(item, document, catalog, responder), items))


# ---------------------------------------------------------------- figures


def _mean(values: Sequence[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


def _accuracy(verdicts: Iterable[bool | None]) -> float | None:
    known = [verdict for verdict in verdicts if verdict is not None]
    return sum(known) / len(known) if known else None


def _rounded(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(value, digits)


def _summary(verdicts: Sequence[bool | None], costs: Sequence[float], reference_cost: float) -> dict[str, Any]:
    total = math.fsum(costs)
    return {
        "accuracy": _rounded(_accuracy(verdicts)),
        "cost_usd": _rounded(total, 8),
        "mean_cost_usd": _rounded(total / len(costs) if costs else None, 8),
        "relative_cost": _rounded(total / reference_cost if reference_cost else None),
    }


def recorded_answers(
    items: Sequence[RecordedItem], tiers: TierMap, prices: Mapping[str, Price]
) -> dict[str, dict[str, RecordedAnswer]]:
    """item id -> tier -> the tier's recorded answer, priced."""
    return {
        item.id: {tier: recorded_answer(item, model, prices[tier]) for tier, model in tiers.items()} for item in items
    }


def baselines(
    items: Sequence[RecordedItem],
    tiers: TierMap,
    prices: Mapping[str, Price],
    final_tier_share: Mapping[str, float],
) -> dict[str, Any]:
    answers = recorded_answers(items, tiers, prices)
    top = top_tier(tiers)
    reference_cost = math.fsum(answers[item.id][top].cost_usd for item in items)
    tier_only = {
        tier: _summary(
            [answers[item.id][tier].correct for item in items],
            [answers[item.id][tier].cost_usd for item in items],
            reference_cost,
        )
        for tier in tiers
    }
    oracle_verdicts, oracle_costs, oracle_tiers = [], [], Counter()
    for item in items:
        by_tier = answers[item.id]
        right = [tier for tier in tiers if by_tier[tier].correct]
        choice = min(right, key=lambda tier: by_tier[tier].cost_usd) if right else top
        oracle_verdicts.append(bool(right))
        oracle_costs.append(by_tier[choice].cost_usd)
        oracle_tiers[choice if right else "none"] += 1
    oracle = _summary(oracle_verdicts, oracle_costs, reference_cost)
    oracle["tier_share"] = {tier: round(count / len(items), 6) for tier, count in oracle_tiers.items()}
    mix_accuracy = math.fsum(share * (tier_only[tier]["accuracy"] or 0.0) for tier, share in final_tier_share.items())
    mix_cost = math.fsum(
        share * math.fsum(answers[item.id][tier].cost_usd for item in items) for tier, share in final_tier_share.items()
    )
    random_mix = {
        "accuracy": _rounded(mix_accuracy),
        "cost_usd": _rounded(mix_cost, 8),
        "mean_cost_usd": _rounded(mix_cost / len(items), 8),
        "relative_cost": _rounded(mix_cost / reference_cost if reference_cost else None),
        "shares": dict(final_tier_share),
        "method": "expected value of sending each item to one tier drawn with the policy's final-tier shares",
    }
    return {
        "reference_tier": top,
        "flagship_only": {"tier": top, **tier_only[top]},
        "tier_only": tier_only,
        "oracle": oracle,
        "random_mix": random_mix,
        "reference_cost_usd": reference_cost,
    }


def policy_report(
    runs: Sequence[ItemRun], outcomes: Outcomes, tiers: TierMap, prices: Mapping[str, Price]
) -> dict[str, Any]:
    """The figures `replay_eval --json` prints, on the items the policy could route."""
    routed = [run for run in runs if run.error is None]
    unroutable = [run for run in runs if run.error is not None]
    by_id = {item.id: item for item in outcomes.items}
    items = [by_id[run.item_id] for run in routed]
    count = len(routed)
    calls, escalations, finals, holds = Counter(), Counter(), Counter(), Counter()
    for run in routed:
        for step in run.steps:
            calls[step.answer.tier] += 1
            escalations[step.answer.tier] += not step.accepted
        finals[run.final.tier] += 1
        for rule_id in run.holds:
            holds[rule_id] += 1
    final_tier_share = {tier: round(finals[tier] / count, 6) for tier in tiers if finals[tier]}
    report: dict[str, Any] = {"items": count}
    if not routed:
        return {**report, "unroutable": len(unroutable), "errors": sorted({run.error for run in unroutable})}
    reference = baselines(items, tiers, prices, {tier: finals[tier] / count for tier in tiers if finals[tier]})
    costs = [run.cost_usd for run in routed]
    latencies = [run.latency_ms for run in routed]
    report.update(_summary([run.final.correct for run in routed], costs, reference.pop("reference_cost_usd")))
    report.update(reference)
    report.update(
        {
            "escalation_rate": {tier: round(escalations[tier] / calls[tier], 6) for tier in tiers if calls[tier]},
            "tier_calls": {tier: calls[tier] for tier in tiers if calls[tier]},
            "final_tier_share": final_tier_share,
            # Recorded latencies only: a loopback round trip says nothing about a provider.
            "mean_latency_ms": None if None in latencies else _rounded(_mean(latencies), 3),  # type: ignore[arg-type]
            "approvals_triggered": {
                "items": sum(1 for run in routed if run.holds),
                "rate": round(sum(1 for run in routed if run.holds) / count, 6),
                "by_rule": dict(sorted(holds.items())),
            },
            "rules": dict(Counter(run.rule_id for run in routed)),
            "unroutable": len(unroutable),
            "unscored_items": sum(1 for run in routed if run.final.correct is None),
            "tokens_estimated": any(
                tokens_estimated(item.responses[model]) for item in items for model in tiers.values()
            ),
        }
    )
    if unroutable:
        report["errors"] = sorted({run.error for run in unroutable})  # type: ignore[type-var]
    return report
