"""Escalation thresholds with a statistical guarantee: Learn then Test on a loss that is the target itself.

The guarantee, exactly. Items are i.i.d. draws from a distribution D (the traffic the recorded items
stand for). With r the target (say 0.95), "reference" the most capable tier mapped (the flagship) and
lambda-hat the thresholds chosen, with probability at least 1 - delta over the calibration sample:

    P_D(the cascade's answer under lambda-hat is right) >= r x P_D(the reference's answer is right),

counting an answer of unknown correctness as wrong for the cascade and right for the reference. Finite
sample, distribution free: nothing is assumed about D, about the confidence scores (calibrated or not) or
about how the tiers' errors are related.

How (evaluation.calibration.certify and .exact hold the pieces):
- The loss. Per item L(lambda) = r x [reference right] - [cascade right], in [-1, r]; E[L] <= 0 is the
  accuracy-ratio claim itself. The previous risk, P(cascade wrong | reference right) with Clopper-Pearson,
  only bounded the claim: it gave no credit for the items where the cascade is right and the reference
  wrong, and tested on the reference-right items only. L counts every item and every such credit.
- The test. H(lambda): E[L(lambda)] >= 0 is tested exactly (evaluation.calibration.exact, with the proof):
  L takes four values only (both right r - 1, reference only r, cascade only -1, both wrong 0), so the
  items' distribution is a four-cell multinomial whatever D is, and Barnard's unconditional test on it —
  conditioned on the both-wrong items, a studentized mean, its largest rejection probability over the
  null bounded on a grid by coupling — is valid at the fixed n calibration has, with no approximation.
  It replaced Waudby-Smith & Ramdas betting, valid at every n at once and paying for it with about twice
  the items (log(1/delta) against z^2 / 2). Hoeffding or Hoeffding-Bentkus would pay for L's widest
  variance; for a 0/1 loss the exact binomial test is the optimum, and L is not 0/1. Conformal risk
  control was not chosen: it controls an expected loss that is monotone in one parameter, and the
  accuracy of a cascade is neither monotone in its thresholds nor a one-parameter family once two tiers
  escalate.
- The family-wise error. Fixed-sequence testing (Angelopoulos, Bates, Candès, Jordan, Lei 2021, "Learn
  then Test", arXiv:2110.01052) along a path ordered before testing: for one escalating tier the grid
  1.00, 0.995, ..., 0.90, 0.89, ..., 0.00 (`threshold_grid`; no data spent on it); for several, two
  sequences sharing delta (Bonferroni): Pareto Testing (Laufer-Goldshtein et al. 2023; `ordering_share`
  of the calibration items order the front, the rest test) and a staircase fixed without data (earlier
  tiers at 1.00, the last one lowered) tested on every item, at delta / 2 each, or 0.2 and 0.8 of delta
  below 512 calibration items (evaluation.calibration.certify says why). Every rejected setting meets
  the target simultaneously (FWER <= delta), so the cheapest of them is chosen after looking at costs.
- No item wasted: `holdout` defaults to 0. A held-out split only reports, never certifies; the validity
  of the procedure is shown instead by evaluation.calibration.study over hundreds of splits where the
  truth is known (`calibration_study`), not by one held-out figure per run.

When nothing is certified, the report says how many labelled items, arriving at the rates seen, would
certify the most conservative setting and the cheapest setting that meets the target on the sample.

Escalation is `PlanStep.accepts` on the plan the router made for each item (strictly below the threshold
escalates), through `CascadeCase.final_index`, the rule of the one cascade walk a worker uses.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from evaluation.calibration.cases import (
    CandidateStats,
    CascadeCase,
    Thresholds,
    calibrated_tiers,
    collect_cases,
    evaluate_thresholds,
    gates,
    observe_case,
)
from evaluation.calibration.certify import Certificate, items_needed, learn_then_test, margin, staircase_share
from evaluation.calibration.curve import mark_frontier
from evaluation.calibration.table import OutcomeTable, outcome_table
from evaluation.recorded.outcomes import EvaluationError

__all__ = [
    "METHOD",
    "Calibration",
    "CandidateStats",
    "CascadeCase",
    "Thresholds",
    "calibrate",
    "calibrated_tiers",
    "check_parameters",
    "collect_cases",
    "evaluate_thresholds",
    "gates",
    "observe_case",
    "threshold_grid",
]

METHOD = (
    "Learn then Test (Angelopoulos et al. 2021), fixed-sequence, with an exact unconditional (Barnard) test "
    "on the loss target x [reference right] - [cascade right], whose mean <= 0 is the target"
)
ORDERING_SHARE = 0.25


def threshold_grid(tiers: Sequence[str]) -> list[Thresholds]:
    """Conservative first: every tier's threshold from 1.00 down, 0.005 apart from 1.00 to 0.90, then 0.01
    apart (to 0.00 for one tier; to 0.85 for more, and 0.05 apart below) — overconfident tiers crowd their
    scores near 1, where a coarse grid leaves no setting between "escalate nearly all" and "accept the
    confidently wrong". On synthetic-miscalibrated at target 0.97 the 0.01 steps 0.97 / 0.96 / 0.95 of mini
    were each about a tenth of the flagship's cost apart, and the certified setting sat one step above the
    hindsight one (tightness median 1.205 over 200 splits); at 0.005 it is 1.15, while the hindsight
    setting on the whole set got 0.4% cheaper only (0.848 -> 0.845 of the flagship's cost): the gain is the
    certificate's, not a denominator moved by the finer grid. 1,849 settings for two tiers instead of 1,089.

    Validity: the grid is a constant, fixed before any item is seen (not from the items' confidences,
    which carry information about their correctness: a grid cut at the testing items' confidence
    quantiles would make every hypothesis depend on the testing items, which Learn then Test's fixed
    families exclude). More settings cost no delta either: fixed-sequence testing spends all of delta on
    each test in turn and stops at the first failure, whatever the path's length."""
    fine = {round(1 - index / 200, 4) for index in range(21)}
    if len(tiers) == 1:
        values = sorted(fine | {round(1 - index / 100, 4) for index in range(101)}, reverse=True)
    else:
        top = fine | {round(1 - index / 100, 4) for index in range(16)}
        values = sorted(top | {round(1 - index / 20, 4) for index in range(21)}, reverse=True)
    return [dict(zip(tiers, combination, strict=True)) for combination in itertools.product(values, repeat=len(tiers))]


def _coarse(thresholds: Thresholds) -> bool:
    return all(abs(value * 20 - round(value * 20)) < 1e-9 for value in thresholds.values())


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
    needed: dict[str, Any] | None = None  # labelled items that would certify, at the rates seen
    curve: list[dict[str, Any]] | None = None  # every grid setting on the calibration items, frontier marked

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
            "needed": self.needed,
            "curve": self.curve,
        }

    @property
    def guarantee(self) -> str:
        p = self.parameters
        return (
            f"with probability >= {1 - p['delta']:g} over the calibration sample, the accuracy of the cascade >= "
            f"{p['target_relative']:g} x {p['reference_tier']}-only accuracy on the distribution the items "
            "were drawn from (an answer of unknown correctness counts as wrong for the cascade, right for the "
            f"{p['reference_tier']})"
        )


def _figures(stats: CandidateStats, items: int, target_relative: float) -> dict[str, Any]:
    saving = None if stats.relative_cost is None else 1 - stats.relative_cost
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


def hindsight_curve(table: OutcomeTable, columns: np.ndarray) -> list[dict[str, Any]]:
    """Every setting's accuracy and relative cost on `columns`, the frontier marked (no guarantee)."""
    accuracy, relative = table.accuracy(columns), table.relative_cost(columns)
    points = [
        {"thresholds": dict(setting), "relative_cost": round(float(cost), 6), "accuracy": round(float(right), 6)}
        for setting, cost, right in zip(table.settings, relative, accuracy, strict=True)
    ]
    return mark_frontier(points)


def _needed(
    table: OutcomeTable,
    columns: np.ndarray,
    certificate: Certificate,
    *,
    target: float,
    delta: float,
    testing_share: float,
) -> dict[str, Any]:
    """Labelled items that would certify, if more came at the rates seen on the calibration items: the
    first setting of the path (certifying anything) and the cheapest setting meeting the target on them."""
    mean_loss = table.mean_losses(target, columns)
    cost = table.costs(columns)
    meeting = np.flatnonzero(mean_loss < 0)
    entries: dict[str, Any] = {}
    candidates = [("first", certificate.path[0] if certificate.path else None)]
    candidates.append(("cheapest_meeting", int(meeting[np.argmin(cost[meeting])]) if meeting.size else None))
    for name, setting in candidates:
        if setting is None:
            entries[name] = None
            continue
        entries[name] = {
            "thresholds": dict(table.settings[setting]),
            "observed_accuracy_ratio": _ratio(table, columns, setting),
            "items": items_needed(table, columns, setting, target=target, delta=delta, testing_share=testing_share),
        }
    return entries


def _ratio(table: OutcomeTable, columns: np.ndarray, setting: int) -> float | None:
    reference = float((~table.reference_wrong[columns]).mean())
    return None if reference == 0 else round(float(table.right[setting, columns].mean()) / reference, 6)


def _needed_text(needed: dict[str, Any], have: int, reference_tier: str) -> str:
    parts = []
    for name, lead in (("first", "the most conservative setting"), ("cheapest_meeting", "the cheapest setting")):
        entry = needed.get(name)
        if not entry:
            continue
        settings = ", ".join(f"{tier} {value:g}" for tier, value in entry["thresholds"].items())
        ratio = entry["observed_accuracy_ratio"]
        seen = "" if ratio is None else f" (accuracy {ratio:.4g} x the {reference_tier}'s on these items)"
        if entry["items"] is None:
            parts.append(f"{lead} ({settings}){seen} would not be certified by any number of items at these rates")
        else:
            parts.append(f"{lead} ({settings}){seen} needs about {entry['items']} labelled items at these rates")
    if not parts:
        return ""
    return f"; with {have} items now, " + "; ".join(parts)


def calibrate(
    cases: Sequence[CascadeCase],
    *,
    target_relative: float,
    delta: float = 0.05,
    holdout: float = 0.0,
    seed: int = 0,
    ordering_share: float = ORDERING_SHARE,
    reference_tier: str = "flagship",
) -> Calibration:
    """Choose the cheapest certified thresholds; report them on a held-out split when one is asked for."""
    check_parameters(target_relative=target_relative, delta=delta, holdout=holdout)
    tiers = calibrated_tiers(cases)
    fixed = len(tiers) <= 1
    parameters = {
        "target_relative": target_relative,
        "alpha": round(1 - target_relative, 12),
        "delta": delta,
        "confidence": round(1 - delta, 12),
        "holdout": holdout,
        "seed": seed,
        "reference_tier": reference_tier,
        "tiers": tiers,
        "procedure": "fixed-sequence" if fixed else "pareto-testing + staircase",
        "ordering_share": None if fixed else ordering_share,
        "p_value": "exact unconditional test on the four-valued loss (evaluation.calibration.exact)",
    }
    rules = tuple(sorted({case.rule_id for case in cases if len(case.steps) > 1}))
    if not tiers:
        reason = "no rule governing these items escalates: every plan has a single tier"
        return Calibration(False, None, rules, parameters, len(cases), 0, 0, 0, None, None, reason)
    shuffled = list(cases)
    random.Random(seed).shuffle(shuffled)
    held = round(len(shuffled) * holdout)
    calibration_cases, holdout_cases = shuffled[held:], shuffled[:held]
    # The staircase's share of delta, Pareto Testing's the rest (set by the number of calibration items).
    parameters["staircase_share"] = None if fixed else staircase_share(len(calibration_cases))
    sizes = (len(calibration_cases), len(holdout_cases))
    table = outcome_table(calibration_cases, threshold_grid(tiers))
    columns = np.arange(table.items)
    certificate = learn_then_test(
        table, columns, target=target_relative, delta=delta, fixed_path=fixed, ordering_share=ordering_share, seed=seed
    )
    # The report keeps the frontier and the 0.05 grid: every setting would make a heavy record and chart.
    curve = [point for point in hindsight_curve(table, columns) if point["frontier"] or _coarse(point["thresholds"])]
    testing_share = 1.0 if fixed else 1 - ordering_share
    needed = _needed(table, columns, certificate, target=target_relative, delta=delta, testing_share=testing_share)
    parameters["items_needed_counts"] = "calibration items in all (held-out ones not included)"
    if certificate.chosen is None:
        reason = (
            f"no threshold setting was certified: not even the most conservative one on the path could be "
            f"shown, at confidence {1 - delta:g}, to keep {target_relative:g} of the {reference_tier}'s accuracy"
        ) + _needed_text(needed, len(calibration_cases), reference_tier)
        return Calibration(
            False, None, rules, parameters, *sizes, certificate.tested, 0, None, None, reason, needed, curve
        )
    chosen = evaluate_thresholds(calibration_cases, table.settings[certificate.chosen])
    held_figures = None
    if holdout_cases:
        held_figures = _figures(
            evaluate_thresholds(holdout_cases, chosen.thresholds), len(holdout_cases), target_relative
        )
    reason = ""
    if chosen.relative_cost is not None and chosen.relative_cost >= 1:
        reason = (
            f"the cheapest certified cascade costs {chosen.relative_cost:.3g}x the {reference_tier} alone: "
            f"the confidence signal cannot tell which cheaper answers to keep, so sending these items "
            f"straight to the {reference_tier} is cheaper"
        )
    expected = _figures(chosen, len(calibration_cases), target_relative)
    expected["margin"] = round(margin(table, certificate, certificate.chosen, target=target_relative, delta=delta), 6)
    expected["mean_loss"] = round(float(table.mean_losses(target_relative, columns)[certificate.chosen]), 6)
    for point in curve:
        point["certified"] = point["thresholds"] == chosen.thresholds
    return Calibration(
        True,
        chosen.thresholds,
        rules,
        parameters,
        *sizes,
        certificate.tested,
        len(certificate.certified),
        expected,
        held_figures,
        reason,
        needed,
        curve,
    )
