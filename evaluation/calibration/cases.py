"""One item as calibration sees it (`CascadeCase`: the router's plan and every step's answer, all observed),
how the cases are collected from recorded outcomes, and the figures of one threshold setting over them."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from evaluation.recorded.outcomes import TierMap, top_tier
from evaluation.recorded.responders import Answer, Responder
from evaluation.recorded.simulate import item_facts
from modelserver.recorded import RecordedItem
from routing.decide.policy.document import PolicyDocument
from routing.decide.router import DeploymentInfo, PlanStep, route
from routing.decide.tiers import tier_rank

Thresholds = dict[str, float]


@dataclass(frozen=True)
class CascadeCase:
    """One item as calibration sees it: the router's plan and every plan step's answer (all observed,
    so any threshold can be tried without another call), plus the reference tier's answer."""

    item_id: str
    rule_id: str
    steps: tuple[PlanStep, ...]
    answers: tuple[Answer, ...]
    reference: Answer
    cumulative_cost: tuple[float, ...] = field(init=False, repr=False)
    _gated: tuple[tuple[PlanStep, float], ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        costs = tuple(itertools.accumulate(answer.cost_usd for answer in self.answers))
        gated = tuple((step, answer.confidence) for step, answer in zip(self.steps, self.answers, strict=True))
        object.__setattr__(self, "cumulative_cost", costs)
        object.__setattr__(self, "_gated", gated[:-1])

    def final_index(self, gates: Mapping[str, PlanStep]) -> int:
        """Where the cascade stops when each tier's threshold is its gate's; the last step always answers.

        The rule of the one cascade walk (routing.decide.cascade.cascade_walk) with no cost cap — an item
        has none — as a loop of its own: the search runs it once per item per threshold setting, and
        through the walk a calibration took about ten times as long. tests/evaluation/
        test_calibration_agrees_with_walk.py checks over generated plans that both keep the same step."""
        for index, (step, confidence) in enumerate(self._gated):
            if gates.get(step.tier, step).accepts(confidence):
                return index
        return len(self._gated)


def observe_case(
    item: RecordedItem,
    document: PolicyDocument,
    catalog: Sequence[DeploymentInfo],
    tiers: TierMap,
    responder: Responder,
) -> CascadeCase | str:
    """The item's case, or the router's error when it cannot be routed."""
    result = route(item_facts(item), document, catalog)
    if result.plan is None:
        return result.error or "no route"
    plan = result.plan
    answers = tuple(responder.answer(item, step, plan) for step in plan.steps)
    top = top_tier(tiers)
    if plan.steps[-1].tier == top:
        reference = answers[-1]
    else:
        last = plan.steps[-1]
        reference_step = PlanStep(top, (f"eval-{top}",), None, last.confidence_method, last.confidence_fallback)
        reference = responder.answer(item, reference_step, plan)
    return CascadeCase(item.id, plan.rule_id, plan.steps, answers, reference)


def collect_cases(
    items: Iterable[RecordedItem],
    document: PolicyDocument,
    catalog: Sequence[DeploymentInfo],
    tiers: TierMap,
    responder: Responder,
    *,
    workers: int = 1,
) -> tuple[list[CascadeCase], list[str]]:
    """Route every item and observe every step of its plan (and the reference tier when the plan ends
    elsewhere). Returns the cases and the router's errors for the items it could not route."""

    def observe(item: RecordedItem) -> CascadeCase | str:
        return observe_case(item, document, catalog, tiers, responder)

    if workers <= 1:
        observed = [observe(item) for item in items]
    else:
        with ThreadPoolExecutor(workers) as pool:
            observed = list(pool.map(observe, items))
    cases = [case for case in observed if isinstance(case, CascadeCase)]
    return cases, [error for error in observed if isinstance(error, str)]


@dataclass(frozen=True)
class CandidateStats:
    thresholds: Thresholds
    losses: int  # reference right, cascade not right
    at_risk: int  # reference right
    correct: int
    scored: int
    cost_usd: float
    reference_cost_usd: float
    reference_correct: int
    reference_scored: int

    @property
    def risk(self) -> float | None:
        return self.losses / self.at_risk if self.at_risk else None

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.scored if self.scored else None

    @property
    def reference_accuracy(self) -> float | None:
        return self.reference_correct / self.reference_scored if self.reference_scored else None

    @property
    def relative_cost(self) -> float | None:
        return self.cost_usd / self.reference_cost_usd if self.reference_cost_usd else None


def gates(thresholds: Mapping[str, float]) -> dict[str, PlanStep]:
    # Probe steps carry the candidate thresholds, so acceptance is PlanStep.accepts itself.
    return {tier: PlanStep(tier, (), threshold, "") for tier, threshold in thresholds.items()}


def evaluate_thresholds(cases: Sequence[CascadeCase], thresholds: Mapping[str, float]) -> CandidateStats:
    probe = gates(thresholds)
    losses = at_risk = correct = scored = reference_correct = reference_scored = 0
    costs, reference_costs = [], []
    for case in cases:
        index = case.final_index(probe)
        verdict = case.answers[index].correct
        costs.append(case.cumulative_cost[index])
        reference_costs.append(case.reference.cost_usd)
        if verdict is not None:
            scored += 1
            correct += verdict
        if case.reference.correct is not None:
            reference_scored += 1
            reference_correct += case.reference.correct
        if case.reference.correct:
            at_risk += 1
            losses += verdict is not True
    return CandidateStats(
        dict(thresholds),
        losses,
        at_risk,
        correct,
        scored,
        math.fsum(costs),
        math.fsum(reference_costs),
        reference_correct,
        reference_scored,
    )


def calibrated_tiers(cases: Sequence[CascadeCase]) -> list[str]:
    """The tiers that escalate somewhere: every non-final step of any case's plan."""
    tiers = {step.tier for case in cases for step in case.steps[:-1]}
    return sorted(tiers, key=lambda tier: tier_rank(tier))  # type: ignore[arg-type,return-value]
