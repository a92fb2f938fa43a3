"""Escalation thresholds with a statistical guarantee: Learn then Test.

Method: Angelopoulos, Bates, Candès, Jordan and Lei (2021), "Learn then Test: Calibrating Predictive
Algorithms to Achieve Risk Control" (arXiv:2110.01052). Each candidate threshold setting lambda is a
null hypothesis H(lambda): R(lambda) > alpha; an exact binomial (Clopper-Pearson) p-value is computed for
each on calibration data, and a family-wise error rate procedure keeps those it rejects. Every kept lambda
then satisfies R(lambda) <= alpha simultaneously with probability at least 1 - delta over the calibration
sample, so the cheapest of them may be chosen after looking at costs.

The risk. With r the target (say 0.97 of the reference tier's accuracy), and "reference" the most capable
tier mapped (the flagship):

    R(lambda) = P(the cascade's answer is wrong | the reference tier's answer is right),   alpha = 1 - r.

It is a 0/1 loss on the items the reference gets right, which are i.i.d. draws from that conditional
distribution, so the binomial p-value is exact. And it implies the target: the cascade is right at least
wherever the reference is right and the cascade is too, so

    accuracy(cascade) >= P(reference right) * (1 - R(lambda)) >= r * accuracy(reference).

The bound ignores the items where the cascade is right and the reference wrong: it is conservative by
exactly that share, never optimistic. An answer whose correctness is unknown counts as a loss.

The family-wise procedure:
- one tier to calibrate (a two-tier cascade): fixed-sequence testing over the grid 1.00, 0.99, ..., 0.00,
  from conservative (escalate almost everything) to aggressive, stopping at the first p-value above delta.
  The order is fixed before seeing data, so no split is spent on it.
- two tiers (nano and mini): Pareto Testing (Laufer-Goldshtein, Fisch, Barzilay, Jaakkola 2023,
  "Efficiently Controlling Multiple Risks with Pareto Testing", ICLR): part of the calibration data
  (`ordering_share`) estimates risk and cost on a 0.05 grid of threshold pairs; the settings on the
  risk/cost front, from lowest estimated risk to highest (see `pareto_path`), are the sequence tested on
  the rest of the data. The order never sees the testing data, so fixed-sequence testing stays valid.

Escalation uses `PlanStep.accepts` — strictly below the threshold escalates, equal is accepted — on the
plan the router made for each item, so a threshold means here exactly what it will mean in a worker.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from evaluation.calibration.binomial import binomial_p_value, clopper_pearson_upper
from evaluation.recorded.outcomes import EvaluationError, TierMap, top_tier
from evaluation.recorded.responders import Answer, Responder
from evaluation.recorded.simulate import item_facts
from modelserver.recorded import RecordedItem
from routing.decide.policy.document import PolicyDocument
from routing.decide.router import DeploymentInfo, PlanStep, route
from routing.decide.tiers import tier_rank

METHOD = (
    "Learn then Test (Angelopoulos et al. 2021) with exact binomial (Clopper-Pearson) p-values; "
    "risk = P(cascade wrong | reference tier right) <= 1 - target"
)
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


def _gates(thresholds: Mapping[str, float]) -> dict[str, PlanStep]:
    # Probe steps carry the candidate thresholds, so acceptance is PlanStep.accepts itself.
    return {tier: PlanStep(tier, (), threshold, "") for tier, threshold in thresholds.items()}


def evaluate_thresholds(cases: Sequence[CascadeCase], thresholds: Mapping[str, float]) -> CandidateStats:
    gates = _gates(thresholds)
    losses = at_risk = correct = scored = reference_correct = reference_scored = 0
    costs, reference_costs = [], []
    for case in cases:
        index = case.final_index(gates)
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


def threshold_grid(tiers: Sequence[str]) -> list[Thresholds]:
    """Conservative first: every tier's threshold from 1.00 down (0.01 apart for one tier, 0.05 for two)."""
    steps = 100 if len(tiers) == 1 else 20
    values = [round(1 - index / steps, 4) for index in range(steps + 1)]
    return [dict(zip(tiers, combination, strict=True)) for combination in itertools.product(values, repeat=len(tiers))]


def pareto_path(stats: Sequence[CandidateStats]) -> list[Thresholds]:
    """From lowest estimated risk to highest, each candidate cheaper than every one before it.

    Within equal estimated risk the costlier (more conservative) settings come first: on a small ordering
    split many settings show no loss at all, and jumping straight to the cheapest of them would stake the
    whole sequence on the most aggressive one. Keeping them costs some power, never validity."""
    ordered = sorted(stats, key=lambda s: (s.risk if s.risk is not None else 1.0, -s.cost_usd))
    path, cheapest = [], math.inf
    for candidate in ordered:
        if candidate.cost_usd < cheapest:
            path.append(candidate.thresholds)
            cheapest = candidate.cost_usd
    return path


@dataclass(frozen=True)
class Calibration:
    certified: bool
    thresholds: Thresholds | None
    rules: tuple[str, ...]
    parameters: dict[str, Any]
    calibration_items: int
    holdout_items: int
    tested: int
    certified_count: int
    expected: dict[str, Any] | None
    holdout: dict[str, Any] | None
    reason: str = ""  # why nothing was certified, or advice on what was

    def to_record(self) -> dict[str, Any]:
        return {
            "certified": self.certified,
            "thresholds": self.thresholds,
            "method": METHOD,
            "guarantee": self.guarantee,
            "rules": list(self.rules),
            "parameters": self.parameters,
            "calibration_items": self.calibration_items,
            "holdout_items": self.holdout_items,
            "hypotheses_tested": self.tested,
            "hypotheses_certified": self.certified_count,
            "expected": self.expected,
            "holdout": self.holdout,
            "reason": self.reason,
        }

    @property
    def guarantee(self) -> str:
        p = self.parameters
        return (
            f"with probability >= {1 - p['delta']:g} over the calibration sample, "
            f"P(cascade wrong | {p['reference_tier']} right) <= {p['alpha']:g}, hence accuracy >= "
            f"{p['target_relative']:g} x {p['reference_tier']}-only accuracy (on the distribution the items "
            "were drawn from)"
        )


def _figures(stats: CandidateStats, items: int, target_relative: float, delta: float) -> dict[str, Any]:
    saving = None if stats.relative_cost is None else 1 - stats.relative_cost
    upper = clopper_pearson_upper(stats.losses, stats.at_risk, 1 - delta)
    accuracy, reference = stats.accuracy, stats.reference_accuracy
    return {
        "items": items,
        "accuracy": None if accuracy is None else round(accuracy, 6),
        "reference_accuracy": None if reference is None else round(reference, 6),
        "relative_cost": None if stats.relative_cost is None else round(stats.relative_cost, 6),
        "saving": None if saving is None else round(saving, 6),
        "cost_usd": round(stats.cost_usd, 8),
        "reference_cost_usd": round(stats.reference_cost_usd, 8),
        "risk": None if stats.risk is None else round(stats.risk, 6),
        "risk_upper_bound": round(upper, 6),
        "items_reference_right": stats.at_risk,
        "target_met": (None if accuracy is None or reference is None else accuracy >= target_relative * reference),
    }


def check_parameters(*, target_relative: float, delta: float, holdout: float) -> None:
    if not 0 < target_relative <= 1:
        raise EvaluationError(f"--target-relative must be in (0, 1], got {target_relative:g}")
    if not 0 < delta < 1:
        raise EvaluationError(f"--confidence must be in (0, 1), got {1 - delta:g}")
    if not 0 <= holdout < 1:
        raise EvaluationError(f"--holdout must be in [0, 1), got {holdout:g}")


def learn_then_test(
    cases: Sequence[CascadeCase], tiers: Sequence[str], *, alpha: float, delta: float, ordering_share: float
) -> tuple[list[CandidateStats], int]:
    """The certified threshold settings (family-wise error rate <= delta), each with its figures on all of
    `cases`, and how many settings were tested."""
    grid = threshold_grid(tiers)
    if len(tiers) == 1:
        path, testing_cases = grid, cases
    else:
        cut = round(len(cases) * ordering_share)
        ordering_cases, testing_cases = cases[:cut], cases[cut:]
        path = pareto_path([evaluate_thresholds(ordering_cases, thresholds) for thresholds in grid])
    certified: list[CandidateStats] = []
    for thresholds in path:
        stats = evaluate_thresholds(testing_cases, thresholds)
        if binomial_p_value(stats.losses, stats.at_risk, alpha) > delta:
            break  # fixed-sequence testing: the first failure ends the sequence
        certified.append(stats if testing_cases is cases else evaluate_thresholds(cases, thresholds))
    return certified, min(len(path), len(certified) + 1)


def calibrate(
    cases: Sequence[CascadeCase],
    *,
    target_relative: float,
    delta: float = 0.05,
    holdout: float = 0.3,
    seed: int = 0,
    ordering_share: float = 0.3,
    reference_tier: str = "flagship",
) -> Calibration:
    """Choose the cheapest certified thresholds on a calibration split; report them on the held-out split."""
    check_parameters(target_relative=target_relative, delta=delta, holdout=holdout)
    tiers = calibrated_tiers(cases)
    alpha = 1 - target_relative
    parameters = {
        "target_relative": target_relative,
        "alpha": round(alpha, 12),
        "delta": delta,
        "confidence": round(1 - delta, 12),
        "holdout": holdout,
        "seed": seed,
        "reference_tier": reference_tier,
        "tiers": tiers,
        "procedure": "fixed-sequence" if len(tiers) <= 1 else "pareto-testing",
        "ordering_share": None if len(tiers) <= 1 else ordering_share,
    }
    rules = tuple(sorted({case.rule_id for case in cases if len(case.steps) > 1}))
    if not tiers:
        reason = "no rule governing these items escalates: every plan has a single tier"
        return Calibration(False, None, rules, parameters, len(cases), 0, 0, 0, None, None, reason)
    shuffled = list(cases)
    random.Random(seed).shuffle(shuffled)
    held = round(len(shuffled) * holdout)
    calibration_cases, holdout_cases = shuffled[held:], shuffled[:held]
    sizes = (len(calibration_cases), len(holdout_cases))
    certified, tested = learn_then_test(
        calibration_cases, tiers, alpha=alpha, delta=delta, ordering_share=ordering_share
    )
    if not certified:
        reason = (
            f"no threshold setting was certified: not even the most conservative one could be shown, at "
            f"confidence {1 - delta:g}, to lose at most {alpha:.4g} of the {reference_tier}'s right answers"
        )
        return Calibration(False, None, rules, parameters, *sizes, tested, 0, None, None, reason)
    # Every certified setting meets the risk bound simultaneously, so choosing by cost afterwards is safe.
    chosen = certified[min(range(len(certified)), key=lambda index: (certified[index].cost_usd, index))]
    held_figures = None
    if holdout_cases:
        held_stats = evaluate_thresholds(holdout_cases, chosen.thresholds)
        held_figures = _figures(held_stats, len(holdout_cases), target_relative, delta)
    reason = ""
    if chosen.relative_cost is not None and chosen.relative_cost >= 1:
        reason = (
            f"the cheapest certified cascade costs {chosen.relative_cost:.3g}x the {reference_tier} alone: "
            f"the confidence signal cannot tell which cheaper answers to keep, so sending these items "
            f"straight to the {reference_tier} is cheaper"
        )
    expected = _figures(chosen, len(calibration_cases), target_relative, delta)
    return Calibration(
        True,
        chosen.thresholds,
        rules,
        parameters,
        *sizes,
        tested,
        len(certified),
        expected,
        held_figures,
        reason,
    )
